// Package testmachine is the real "machine" that machine:// tests drive: a
// Debian disk image (examples/make-test-machine.sh: systemd, sshd, GRUB,
// Debian's kernel) that QEMU boots from its disk through the firmware and
// GRUB, with SSH forwarded on loopback, the serial console to a file (the
// --console command follows it) and a QMP socket whose system_reset is the
// --power-cycle command. The image is made once per machine, cached by the
// script's hash; each Start boots a copy-on-write overlay of it.
package testmachine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/lock"
	"github.com/firstbad/firstbad/internal/remote"
	"github.com/firstbad/firstbad/internal/testkernel"
)

// Alias is the machine's name in the ssh_config Start writes.
const Alias = "testmachine"

// Machine is a booted test machine.
type Machine struct {
	Dir        string // its files: overlay, console log, sockets, ssh_config
	SSHConfig  string
	Console    string // the serial console's log
	PowerCycle string // a command that resets it (QMP system_reset)
	ConsoleCmd string // a command whose output is its serial console
	Port       int    // its SSH port on loopback
	cmd        *exec.Cmd
}

func projectRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func script() string { return filepath.Join(projectRoot(), "examples", "make-test-machine.sh") }

// Image returns the cached disk image (with its .key and .hostkey.pub),
// making it if it is missing: a few minutes, once per machine.
func Image(ctx context.Context, logf func(string, ...any)) (string, error) {
	for _, tool := range []string{"mmdebstrap", "sfdisk", "qemu-img", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", &testkernel.SkipError{Reason: fmt.Sprintf("the test machine needs %s (run ./setup.sh)", tool)}
		}
	}
	data, err := os.ReadFile(script())
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	dir := filepath.Join(testkernel.Root(), "machine")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	image := filepath.Join(dir, hex.EncodeToString(sum[:8])+".img")
	l, err := lock.Acquire(ctx, filepath.Join(dir, "lock"), func(h *lock.HeldError) {
		logf("waiting for another process making the test machine (pid %d)", h.PID)
	})
	if err != nil {
		return "", err
	}
	defer l.Release()
	if _, err := os.Stat(image); err == nil {
		return image, nil
	}
	logf("making the test machine's disk image %s (a few minutes, once per machine)", image)
	start := time.Now()
	cmd := exec.CommandContext(ctx, script(), image)
	// Stopped, the script unmounts and detaches its loop device first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", &testkernel.SkipError{Reason: fmt.Sprintf("cannot make the test machine (Debian's packages unreachable?): %v\n%s", err, tail(string(out)))}
	}
	logf("test machine image ready in %s", time.Since(start).Round(time.Second))
	return image, nil
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// OVMF's firmware and its empty variable store, as Debian's ovmf installs
// them.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Start boots a fresh copy of the test machine through SeaBIOS and GRUB
// and waits until it answers SSH; t's cleanup stops it.
func Start(t testing.TB) *Machine { t.Helper(); return start(t, false) }

// StartUEFI boots it through OVMF and systemd-boot instead, with a
// variable store of its own (one-shot choices live there, across resets).
func StartUEFI(t testing.TB) *Machine { t.Helper(); return start(t, true) }

func start(t testing.TB, uefi bool) *Machine {
	t.Helper()
	if testing.Short() {
		t.Skip("real machine test: not in -short mode")
	}
	if os.Getenv("FIRSTBAD_SKIP_KERNEL_TESTS") != "" {
		t.Skip("FIRSTBAD_SKIP_KERNEL_TESTS is set")
	}
	image, err := Image(context.Background(), t.Logf)
	if se, ok := err.(*testkernel.SkipError); ok {
		t.Skip(se.Reason)
	}
	if err != nil {
		t.Fatal(err)
	}
	m := &Machine{Dir: t.TempDir()}
	m.Console = filepath.Join(m.Dir, "console.log")
	if err := m.writeSSHConfig(image); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(m.Dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "raw", overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	qmp := filepath.Join(m.Dir, "qmp.sock")
	m.PowerCycle = fmt.Sprintf(`python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f=s.makefile("rw")
f.readline(); f.write("{\"execute\":\"qmp_capabilities\"}\n"); f.flush(); f.readline()
f.write("{\"execute\":\"system_reset\"}\n"); f.flush(); f.readline()' %s`, qmp)
	m.ConsoleCmd = "tail -n0 -F " + m.Console
	args := []string{"-machine", "q35", "-m", "1024", "-smp", "1", "-display", "none",
		"-serial", "file:" + m.Console, "-drive", "file=" + overlay + ",if=virtio,format=qcow2",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", m.Port), "-device", "virtio-net-pci,netdev=n0",
		"-qmp", "unix:" + qmp + ",server=on,wait=off", "-monitor", "none"}
	if uefi {
		vars := filepath.Join(m.Dir, "OVMF_VARS.fd")
		if out, err := exec.Command("cp", ovmfVars, vars).CombinedOutput(); err != nil {
			t.Skipf("the UEFI test machine needs OVMF (run ./setup.sh): %s", out)
		}
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	m.cmd = exec.Command("qemu-system-x86_64", args...)
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	qlog, _ := os.Create(filepath.Join(m.Dir, "qemu.log"))
	m.cmd.Stdout, m.cmd.Stderr = qlog, qlog
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		_ = m.cmd.Wait()
		qlog.Close()
	})
	if err := m.WaitUp(5 * time.Minute); err != nil {
		data, _ := os.ReadFile(m.Console)
		t.Fatalf("the test machine did not answer SSH: %v\nconsole:\n%s", err, tail(string(data)))
	}
	return m
}

// writeSSHConfig writes the alias, its key and its known host key.
func (m *Machine) writeSSHConfig(image string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	m.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	hk, err := os.ReadFile(image + ".hostkey.pub")
	if err != nil {
		return err
	}
	f := strings.Fields(string(hk))
	known := filepath.Join(m.Dir, "known_hosts")
	if err := os.WriteFile(known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s %s\n", m.Port, f[0], f[1])), 0o600); err != nil {
		return err
	}
	key := filepath.Join(m.Dir, "id")
	data, err := os.ReadFile(image + ".key")
	if err != nil {
		return err
	}
	if err := os.WriteFile(key, data, 0o600); err != nil {
		return err
	}
	m.SSHConfig = filepath.Join(m.Dir, "ssh_config")
	text := fmt.Sprintf("Host %s\n  HostName 127.0.0.1\n  Port %d\n  User root\n  IdentityFile %s\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n",
		Alias, m.Port, key, known)
	return os.WriteFile(m.SSHConfig, []byte(text), 0o600)
}

// Run runs a command on the machine over SSH.
func (m *Machine) Run(ctx context.Context, cmd string) (string, error) {
	c, err := remote.Dial(ctx, remote.Config{File: m.SSHConfig, Timeout: 10 * time.Second}, remote.Dest{Host: Alias})
	if err != nil {
		return "", err
	}
	defer c.Close()
	out, err := c.Run(ctx, cmd, nil)
	return string(out), err
}

// WaitUp waits until the machine answers SSH.
func (m *Machine) WaitUp(within time.Duration) error {
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err = m.Run(ctx, "true")
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(2 * time.Second)
	}
	return err
}
