package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/u-root/u-root/pkg/cpio"
)

// MachineAgentArg, as the first argument, makes the firstbad binary the
// agent of a real machine: there it is an ordinary process started over
// SSH, not the init of a VM.
const MachineAgentArg = "__machine-agent"

// MachineAgent runs a boot's runs on a real machine: args are a fresh dir,
// the size of the boot's archive (the one a VM's initramfs appends to its
// base), which arrives first on stdin and is unpacked into the dir, and,
// for a host test, the address its SSH server listens on (the machine's
// own sshd has port 22; the controller forwards to this one).
// The tests run there (cwd and $FIRSTBAD_ROOT); the markers go to stdout
// as on a VM's console. The rest of stdin stays open while the controller
// wants the runs: at its EOF the test's process group is killed and the
// agent exits.
func MachineAgent(args []string, stdin io.Reader) int {
	if len(args) != 2 && len(args) != 3 {
		say("firstbad-agent: want DIR SIZE [SSH-ADDRESS]")
		return 2
	}
	dir := args[0]
	size, err := strconv.ParseInt(args[1], 10, 64)
	if err == nil {
		err = unpack(dir, io.LimitReader(stdin, size), size)
	}
	var s Settings
	if err == nil {
		err = readSettings(filepath.Join(dir, settingsPath), &s)
	}
	if err == nil && s.SSHKey != "" {
		if len(args) < 3 {
			err = errors.New("a host test, but no address for the SSH server")
		} else {
			err = serveSSH(s.SSHKey, args[2])
		}
	}
	if err != nil {
		say("firstbad-agent: %v", err)
		return 1
	}
	// Go files of an earlier agent in this boot.
	olds, _ := filepath.Glob(goPrefix + "*")
	for _, f := range olds {
		os.Remove(f)
	}
	// The controller gone (EOF on stdin) ends the runs: the test's
	// process group is killed, then the agent.
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		if pid := testPID.Load(); pid > 0 {
			_ = syscall.Kill(-int(pid), syscall.SIGKILL)
		}
		os.Exit(1)
	}()
	say("%s nonce=%s", StartMarker, s.Nonce)
	runAll(s, dir, "")
	if s.WaitGo {
		// The host test may still be running against the machine.
		waitGo(s.FirstRun + s.Runs + 1)
	}
	return 0
}

// testPID is the running test's pid (and process group), 0 between runs.
var testPID atomic.Int64

func readSettings(path string, s *Settings) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("no settings: %v", err)
	}
	return json.Unmarshal(data, s)
}

// unpack writes the archive's files under dir.
func unpack(dir string, r io.Reader, size int64) error {
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return fmt.Errorf("reading the boot's archive: %v", err)
	}
	rr := cpio.Newc.Reader(bytes.NewReader(data))
	for {
		rec, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the boot's archive: %v", err)
		}
		if err := cpio.CreateFileInRoot(rec, dir, false); err != nil {
			return err
		}
	}
}
