package main_test

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/guest"
)

// TestMachineAgent runs the agent as a machine runs it (no VM): the boot's
// archive on stdin, the markers on stdout, the test in the run dir; EOF on
// stdin kills a test still running.
func TestMachineAgent(t *testing.T) {
	start := func(t *testing.T, test string, runs int) (*exec.Cmd, io.WriteCloser, *bufio.Scanner, string) {
		dir := t.TempDir()
		var overlay bytes.Buffer
		s := guest.Settings{Nonce: "n0nce", Commit: "c0ffee", Step: 3, Runs: runs, TimeoutS: 60}
		if err := guest.Overlay(&overlay, s, script(t, test), nil); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binary, guest.MachineAgentArg, dir, strconv.Itoa(overlay.Len()))
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if _, err := in.Write(overlay.Bytes()); err != nil {
			t.Fatal(err)
		}
		return cmd, in, bufio.NewScanner(out), dir
	}
	t.Run("runs", func(t *testing.T) {
		cmd, in, sc, dir := start(t, `[ "$PWD" = "$FIRSTBAD_ROOT" ] && [ "$FIRSTBAD_COMMIT" = c0ffee ] || exit 3; exit $((FIRSTBAD_RUN - 1))`, 2)
		var results []guest.RunResult
		for sc.Scan() {
			if r, ok := guest.ParseMarker(sc.Text(), "n0nce"); ok {
				results = append(results, r)
			}
		}
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("agent: %v", err)
		}
		if len(results) != 2 || results[0].ExitCode != 0 || results[1].ExitCode != 1 {
			t.Fatalf("results %+v, want run 1 exit 0, run 2 exit 1", results)
		}
		if _, err := os.Stat(filepath.Join(dir, "firstbad", "settings.json")); err != nil {
			t.Errorf("the archive was not unpacked into the run dir: %v", err)
		}
	})
	t.Run("EOF kills the test", func(t *testing.T) {
		cmd, in, sc, dir := start(t, `echo $$ > pid; echo started; exec sleep 600`, 1)
		for sc.Scan() && sc.Text() != "started" {
		}
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the agent did not end at EOF on its stdin")
		}
		pid, _ := os.ReadFile(filepath.Join(dir, "pid"))
		if alive(strings.TrimSpace(string(pid))) {
			t.Errorf("the test (pid %s) outlived the agent", pid)
		}
	})
}
