package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Console markers. The host finds the agent's start and each run's result
// on the serial console; the result also goes to a virtio-serial port as
// JSON, but the console copy works on kernels without virtio-console.
const (
	StartMarker  = "FIRSTBAD-START"
	ResultMarker = "FIRSTBAD-RESULT"
	DoneMarker   = "FIRSTBAD-DONE"
	// ResultPort is the virtio-serial port name of the result channel.
	ResultPort = "firstbad.result"
)

// RunResult is one run of the guest test, as the agent reports it.
type RunResult struct {
	Nonce    string  `json:"nonce"`
	Run      int     `json:"run"`
	ExitCode int     `json:"exit_code"`
	Signal   string  `json:"signal,omitempty"`
	Timeout  bool    `json:"timeout,omitempty"`
	Duration float64 `json:"duration_s"`
}

// Marker is the console line for a result.
func (r RunResult) Marker() string {
	return fmt.Sprintf("%s nonce=%s run=%d exit=%d timeout=%v duration=%.3f signal=%s", ResultMarker, r.Nonce, r.Run,
		r.ExitCode, r.Timeout, r.Duration, r.Signal)
}

// ParseMarker reads a result marker line (with any console prefix).
func ParseMarker(line, nonce string) (RunResult, bool) {
	i := strings.Index(line, ResultMarker+" nonce="+nonce+" ")
	if i < 0 {
		return RunResult{}, false
	}
	r := RunResult{Nonce: nonce}
	for _, f := range strings.Fields(line[i+len(ResultMarker):]) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "run":
			r.Run, _ = strconv.Atoi(v)
		case "exit":
			r.ExitCode, _ = strconv.Atoi(v)
		case "timeout":
			r.Timeout = v == "true"
		case "duration":
			r.Duration, _ = strconv.ParseFloat(v, 64)
		case "signal":
			r.Signal = v
		}
	}
	return r, r.Run > 0
}

// IsAgent reports whether this process is the guest's init.
func IsAgent() bool { return os.Getpid() == 1 && filepath.Base(os.Args[0]) == "init" }

func say(format string, args ...any) { fmt.Fprintf(os.Stdout, "\n"+format+"\n", args...) }

// Agent is the guest's /init: set up the system, announce itself, run the
// test, report, power off. It never returns normally: PID 1 exiting would
// panic the kernel, so every path ends in a power-off.
func Agent() int {
	defer poweroff()
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"}, {"tmpfs", "/run", "tmpfs"},
	} {
		if err := syscall.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != syscall.EBUSY {
			say("firstbad-agent: mount %s: %v", m.dst, err)
		}
	}
	_ = os.MkdirAll("/dev/pts", 0o755)
	_ = syscall.Mount("devpts", "/dev/pts", "devpts", 0, "")
	os.Setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
	os.Setenv("HOME", "/root")

	var s Settings
	data, err := os.ReadFile(settingsPath)
	if err == nil {
		err = json.Unmarshal(data, &s)
	}
	if err != nil {
		say("firstbad-agent: no settings (%v): is this firstbad's initramfs?", err)
		return 1
	}
	network()
	if s.Root != "" {
		root, err := mountRoot(s.Root, s.Files)
		if err != nil {
			say("%s nonce=%s %v", SetupFailedMarker, s.Nonce, err)
			return 1
		}
		if s.Init == InitSystem {
			err = handOver(root)
			say("%s nonce=%s %v", SetupFailedMarker, s.Nonce, err)
			return 1
		}
		chrootPath = root
	}
	serve(s)
	return 0
}

// serve is the agent's part once the test's system is up: the SSH server
// for a host test, the start marker, the runs (or --shell), then the wait
// for the host test's end.
func serve(s Settings) {
	if s.SSHKey != "" {
		if err := serveSSH(s.SSHKey, ":"+strconv.Itoa(SSHPort)); err != nil {
			say("firstbad-agent: SSH server: %v", err)
		}
	}
	say("%s nonce=%s", StartMarker, s.Nonce)
	if s.Shell {
		shell()
		return
	}
	runAll(s, "", resultPort())
	if s.WaitGo {
		// The host test may still be running against this guest: power
		// off only when the host says so (or it stops the VM).
		waitGo(s.FirstRun + s.Runs + 1)
	}
}

// waitGo waits until the host creates run n's go file (over SSH: in the
// guest's root, when there is one).
func waitGo(n int) {
	for {
		if _, err := os.Stat(chrootPath + GoFile(n)); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runAll runs the test's runs under root ("" in the guest), reporting each
// on the result port (if any) and the console, then the done marker.
func runAll(s Settings, root, port string) {
	for i := s.FirstRun + 1; i <= s.FirstRun+s.Runs; i++ {
		if s.WaitGo {
			waitGo(i)
		}
		r := RunResult{Nonce: s.Nonce, Run: i}
		if !s.NoGuestTest {
			r = runTest(s, i, root)
		}
		// The result channel first: the host may stop the VM as soon as
		// it reads the console marker.
		if port != "" {
			if f, err := os.OpenFile(port, os.O_WRONLY, 0); err == nil {
				js, _ := json.Marshal(r)
				f.Write(append(js, '\n'))
				f.Close()
			}
		}
		say("%s", r.Marker())
	}
	say("%s nonce=%s", DoneMarker, s.Nonce)
}

// network brings up loopback and, when the VM has a NIC, QEMU user-mode
// networking's address and route.
func network() {
	ip := func(args ...string) {
		if out, err := exec.Command("/bin/busybox", append([]string{"ip"}, args...)...).CombinedOutput(); err != nil {
			say("firstbad-agent: ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "set", "lo", "up")
	if _, err := os.Stat("/sys/class/net/eth0"); err == nil {
		ip("addr", "add", "10.0.2.15/24", "dev", "eth0")
		ip("link", "set", "eth0", "up")
		ip("route", "add", "default", "via", "10.0.2.2")
	}
}

// resultPort finds the result channel's device by name (there is no udev).
func resultPort() string {
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil && strings.TrimSpace(string(b)) == ResultPort {
			return "/dev/" + filepath.Base(filepath.Dir(n))
		}
	}
	return ""
}

func runTest(s Settings, n int, root string) RunResult {
	r := RunResult{Nonce: s.Nonce, Run: n}
	cmd := exec.Command("/bin/sh", root+testPath)
	cmd.Dir = "/root"
	if root != "" {
		cmd.Dir = root
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stdout
	cmd.Env = append(os.Environ(), "FIRSTBAD_COMMIT="+s.Commit, "FIRSTBAD_STEP="+strconv.Itoa(s.Step), "FIRSTBAD_RUN="+strconv.Itoa(n))
	if root != "" {
		cmd.Env = append(cmd.Env, "FIRSTBAD_ROOT="+root)
	}
	inRoot(cmd) // the user's --env may still set another PATH
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	start := time.Now()
	if err := cmd.Start(); err != nil {
		say("firstbad-agent: starting the test: %v", err)
		r.ExitCode = 127
		return r
	}
	done := make(chan struct{})
	if s.TimeoutS > 0 {
		go func() {
			select {
			case <-done:
			case <-time.After(time.Duration(s.TimeoutS * float64(time.Second))):
				r.Timeout = true
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}()
	}
	testPID.Store(int64(cmd.Process.Pid))
	err := cmd.Wait()
	testPID.Store(0)
	close(done)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	r.Duration = time.Since(start).Seconds()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.Signal = ws.Signal().String()
			r.Signal = strings.ReplaceAll(r.Signal, " ", "_")
			r.ExitCode = 128 + int(ws.Signal())
		} else {
			r.ExitCode = ee.ExitCode()
		}
	}
	return r
}

// shell is --shell's login shell on the console: in the guest's root
// when there is one.
func shell() {
	sh := []string{"/bin/sh", "-l"}
	if chrootPath != "" {
		sh = append([]string{"/bin/busybox", "chroot", chrootPath}, sh...)
		os.Setenv("PATH", rootPATH)
	}
	cmd := exec.Command("/bin/busybox", append([]string{"setsid", "cttyhack"}, sh...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	_ = cmd.Run()
}

// poweroff ends the VM. Without ACPI (microvm, or a kernel built without
// it) a power-off only halts the CPU, so the VM is reset instead: QEMU
// runs with -no-reboot, which turns a reset into its exit.
func poweroff() {
	syscall.Sync()
	if _, err := os.Stat("/sys/firmware/acpi"); err != nil {
		_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	}
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	// Not reached; if it were, PID 1 must not exit.
	select {}
}
