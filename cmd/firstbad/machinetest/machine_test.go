// Package machinetest drives firstbad's machine:// target against a real
// disk-booted machine (internal/testmachine). It is a package of its own so
// that go test runs it beside cmd/firstbad's kernel tests: most of its time
// is the machine rebooting under TCG.
package machinetest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/clitest"
	"github.com/firstbad/firstbad/internal/testkernel"
	"github.com/firstbad/firstbad/internal/testmachine"
)

var binary string

func TestMain(m *testing.M) { clitest.Main(m, "..", &binary) }

// env is one firstbad installation: its own state dir, the shared cache.
type env struct {
	t     *testing.T
	state string
	cache string
}

func newEnv(t *testing.T) *env { return &env{t: t, state: t.TempDir()} }

func (e *env) run(args ...string) clitest.Result {
	e.t.Helper()
	return clitest.Run(e.t, binary, append([]string{"--state-dir", e.state, "--cache-dir", e.cache}, args...)...)
}

func script(t *testing.T, body string) string { return clitest.Script(t, body) }

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// machineTest is the guest test run on the machine: it proves the
// candidate's modules installed (loop loads) and judges autogrouping as
// examples/autogroup/test.sh does.
const machineTest = `uname -r
modprobe loop && grep -q '^loop ' /proc/modules || { echo "loop did not load"; exit 125; }
v=$(cat /proc/sys/kernel/sched_autogroup_enabled) || exit 125
echo "sched_autogroup_enabled=$v"
[ "$v" = 1 ]`

// TestMachine drives a real disk-booted machine (testmachine: Debian with
// systemd, GRUB and its own kernel, under QEMU): one step per boot method,
// a candidate that panics at boot, a hang power-cycled, and the machine
// left as it was.
func TestMachine(t *testing.T) {
	k := testkernel.Get(t)
	m := testmachine.Start(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	ctx := context.Background()
	defaultKernel := strings.TrimSpace(must(m.Run(ctx, "uname -r")))
	// The shared test kernel's own config as the machine's base: the same
	// kernel, with modules and a release of its own.
	base := filepath.Join(filepath.Dir(k.Image), "config")
	machine := func(test string, target string, extra ...string) (machineResult, clitest.Result) {
		t.Helper()
		args := append([]string{"--json", "test", "--repo", k.Repo, "tip", "--guest-test", script(t, test),
			"--base-config", base, "--kconfig", k.Fragment, "--target", target, "--ssh-config", m.SSHConfig,
			"--console", m.ConsoleCmd, "--power-cycle", m.PowerCycle, "--boot-timeout", "4m", "--timeout", "2m"}, extra...)
		start := time.Now()
		res := e.run(args...)
		var r machineResult
		if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
			t.Fatalf("exit %d, stdout not JSON: %v\n%s\n%s", res.Code, err, res.Stdout, res.Stderr)
		}
		console, _ := os.ReadFile(r.ConsoleLog)
		t.Logf("%s: exit %d in %.0f s (build %.0f s, boot %.0f s): %s %s\n%s", target, res.Code, time.Since(start).Seconds(),
			deref(r.BuildS), deref(r.BootS), r.Verdict, r.Reason, machineLines(string(console)))
		return r, res
	}
	left := func(t *testing.T) {
		t.Helper()
		out := must(m.Run(ctx, "uname -r; ls /boot /boot/firstbad 2>&1; ls /lib/modules; cat /var/lib/firstbad/manifest /var/lib/firstbad/lock 2>&1; grep -c firstbad /boot/grub/custom.cfg 2>&1; true"))
		if !strings.HasPrefix(out, defaultKernel+"\n") || strings.Contains(out, "-firstbad-") || strings.Contains(out, "pid ") {
			t.Errorf("the machine was not left as it was (default %s):\n%s", defaultKernel, out)
		}
	}

	t.Run("grub", func(t *testing.T) {
		r, res := machine(machineTest, "machine://"+testmachine.Alias)
		if res.Code != 1 || r.Verdict != "bad" || r.Reason != "exit 1" {
			t.Fatalf("exit %d verdict %s reason %q; want 1 bad \"exit 1\" (autogrouping is off at tip)\n%s", res.Code, r.Verdict, r.Reason, res.Stderr)
		}
		left(t)
	})
	t.Run("kexec", func(t *testing.T) {
		r, res := machine(machineTest, "machine://"+testmachine.Alias+"?boot=kexec")
		if res.Code != 1 || r.Verdict != "bad" || r.Reason != "exit 1" {
			t.Fatalf("exit %d verdict %s reason %q; want 1 bad \"exit 1\"\n%s", res.Code, r.Verdict, r.Reason, res.Stderr)
		}
		left(t)
	})
	t.Run("panic at boot", func(t *testing.T) {
		// init exits: the candidate panics, reboots (panic=10) and the
		// one-shot entry is gone: the machine is back in its own kernel.
		r, res := machine("exit 0", "machine://"+testmachine.Alias, "--append", "init=/bin/false")
		if res.Code != 125 || r.Verdict != "skip" || !strings.Contains(r.Reason, "boot failure: Kernel panic") {
			t.Fatalf("exit %d verdict %s reason %q; want 125 skip, a boot failure titled with the panic\n%s", res.Code, r.Verdict, r.Reason, res.Stderr)
		}
		left(t)
	})
	t.Run("controller killed", func(t *testing.T) {
		// Killed while the machine reboots into the candidate: the next
		// firstbad on the machine (here doctor) finds the lock of a dead
		// controller, brings the machine back to its own kernel and
		// removes what the killed one installed.
		cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "test", "--repo", k.Repo, "tip",
			"--guest-test", script(t, "exit 0"), "--base-config", base, "--kconfig", k.Fragment,
			"--target", "machine://"+testmachine.Alias, "--ssh-config", m.SSHConfig, "--boot-timeout", "4m")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline) && !killed; time.Sleep(time.Second) {
			logs, _ := filepath.Glob(filepath.Join(e.state, "tests", "*", "console.log"))
			for _, l := range logs {
				if data, _ := os.ReadFile(l); bytes.Contains(data, []byte("asked to reboot")) {
					cmd.Process.Kill()
					killed = true
				}
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatal("the step never reached its reboot")
		}
		time.Sleep(15 * time.Second) // on its way down
		if err := m.WaitUp(4 * time.Minute); err != nil {
			t.Fatal(err)
		}
		res := e.run("doctor", "--target", "machine://"+testmachine.Alias, "--ssh-config", m.SSHConfig)
		if !strings.Contains(res.Stdout, "firstbad-machine") {
			t.Fatalf("doctor did not check the machine (exit %d):\n%s\n%s", res.Code, res.Stdout, res.Stderr)
		}
		t.Logf("doctor after the kill:\n%s", res.Stdout)
		left(t)
	})
	t.Run("hang", func(t *testing.T) {
		// The network goes: the machine stops answering, is power-cycled
		// and comes back in its default kernel; the step is bad.
		r, res := machine(`ip link set "$(ls /sys/class/net | grep -v '^lo$' | head -n 1)" down; sleep 600`, "machine://"+testmachine.Alias)
		if res.Code != 1 || r.Verdict != "bad" || !strings.Contains(r.Reason, "hang") {
			t.Fatalf("exit %d verdict %s reason %q; want 1 bad hang\n%s", res.Code, r.Verdict, r.Reason, res.Stderr)
		}
		left(t)
	})
}

type machineResult struct {
	Verdict    string   `json:"verdict"`
	Reason     string   `json:"reason"`
	ConsoleLog string   `json:"console_log"`
	BuildS     *float64 `json:"build_s"`
	BootS      *float64 `json:"boot_s"`
}

// machineLines are firstbad's own lines of a machine's console log.
func machineLines(console string) string {
	var b strings.Builder
	for _, l := range strings.Split(console, "\n") {
		if strings.HasPrefix(l, "firstbad: machine") || strings.Contains(l, "FIRSTBAD-") || strings.Contains(l, "Kernel panic") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// report is the part of a run's JSON report the bisect checks.
type report struct {
	Outcome   string  `json:"outcome"`
	Culprit   *string `json:"culprit"`
	Endpoints []step  `json:"endpoints"`
	Steps     []step  `json:"steps"`
}

type step struct {
	Commit   string   `json:"commit"`
	Verdict  string   `json:"verdict"`
	Duration float64  `json:"duration_s"`
	Build    *float64 `json:"build_s"`
	Test     *float64 `json:"test_s"`
	Evidence struct {
		ConsoleLog *string `json:"console_log"`
	} `json:"evidence"`
}

// TestMachineBisect is the machine's whole bisect: the autogroup change
// found among five commits of the example history, each candidate built
// with its modules, installed, booted once on the disk-booted machine and
// tested there, by GRUB's one-shot entry and then by kexec (the second
// run's kernels come from the artifact cache: its steps cost the install,
// the reboot and the test). Many builds: bench/machine-bench.sh runs it
// (FIRSTBAD_MACHINE_BISECT=1); the suite's TestMachine covers each path.
func TestMachineBisect(t *testing.T) {
	if os.Getenv("FIRSTBAD_MACHINE_BISECT") == "" {
		t.Skip("a whole machine bisect: bench/machine-bench.sh runs it (FIRSTBAD_MACHINE_BISECT=1)")
	}
	k := testkernel.Get(t)
	m := testmachine.Start(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	base := filepath.Join(filepath.Dir(k.Image), "config")
	out, err := exec.Command("git", "-C", k.Repo, "rev-parse", "f76895681").Output()
	if err != nil {
		t.Fatal(err)
	}
	culprit := strings.TrimSpace(string(out))
	for _, method := range []string{"grub", "kexec"} {
		start := time.Now()
		res := e.run("--json", "run", "--repo", k.Repo, "--good", "f76895681~3", "--bad", "91638c430",
			"--guest-test", script(t, machineTest), "--base-config", base, "--kconfig", k.Fragment,
			"--target", "machine://"+testmachine.Alias+"?boot="+method, "--ssh-config", m.SSHConfig,
			"--console", m.ConsoleCmd, "--power-cycle", m.PowerCycle, "--boot-timeout", "5m")
		var r report
		if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
			t.Fatalf("%s: exit %d, stdout not JSON: %v\n%s\n%s", method, res.Code, err, res.Stdout, res.Stderr)
		}
		if r.Culprit == nil || *r.Culprit != culprit || r.Outcome != "found" {
			t.Fatalf("%s: outcome %s culprit %v, want found %s\n%s", method, r.Outcome, r.Culprit, culprit, res.Stderr)
		}
		fmt.Printf("machine bisect by %s: found %s in %.0f s\n", method, culprit[:12], time.Since(start).Seconds())
		for _, st := range append(r.Endpoints, r.Steps...) {
			var console []byte
			if st.Evidence.ConsoleLog != nil {
				console, _ = os.ReadFile(*st.Evidence.ConsoleLog)
			}
			fmt.Printf("  %s %-4s build %6.1f s, boot+test %6.1f s, total %6.1f s\n%s", st.Commit[:12], st.Verdict,
				deref(st.Build), deref(st.Test), st.Duration, indent(machineLines(string(console))))
		}
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "      " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ") + "\n"
}
