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
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// hostTest runs on the controller against the machine: the scp-loop
// shape of a VM host's bug, once.
const hostTest = `set -e
f=$(mktemp); trap 'rm -f "$f"' EXIT
echo firstbad > "$f"
scp -q -F "$FIRSTBAD_SSH_CONFIG" "$f" guest:/tmp/firstbad-host-test
r=$($FIRSTBAD_SSH uname -r)
v=$($FIRSTBAD_SSH cat /proc/sys/kernel/sched_autogroup_enabled)
c=$($FIRSTBAD_SSH cat /tmp/firstbad-host-test)
echo "host test: $r autogroup=$v copied=$c"
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
	br := machineBranch(t, k.Repo)
	// The shared test kernel's own config as the machine's base: the same
	// kernel, with modules and a release of its own.
	base := filepath.Join(filepath.Dir(k.Image), "config")
	machine := func(test string, target string, extra ...string) (machineResult, clitest.Result) {
		t.Helper()
		args := append([]string{"--json", "test", "--repo", k.Repo, br.bad, "--guest-test", script(t, test),
			"--base-config", base, "--kconfig", k.Fragment, "--target", target, "--ssh-config", m.SSHConfig,
			"--console", m.ConsoleCmd, "--power-cycle", m.PowerCycle, "--boot-timeout", "4m", "--timeout", "2m"}, extra...)
		r, res, _ := machineStep(t, e, target, args...)
		return r, res
	}
	left := func(t *testing.T) {
		t.Helper()
		out := must(m.Run(ctx, "uname -r; ls /boot /boot/firstbad 2>&1; ls /lib/modules; cat /var/lib/firstbad/manifest /var/lib/firstbad/lock 2>&1; grep -c firstbad /boot/grub/custom.cfg 2>&1; true"))
		if !strings.HasPrefix(out, defaultKernel+"\n") || strings.Contains(out, "-firstbad-") || strings.Contains(out, "pid ") {
			t.Errorf("the machine was not left as it was (default %s):\n%s", defaultKernel, out)
		}
	}

	t.Run("bad input", func(t *testing.T) {
		// Each refused before anything is installed, with a message that
		// names the problem, and the machine left exactly as found (no
		// firstbad dir, no lock). A step's exit codes: 128 input, 129
		// environment.
		target := "machine://" + testmachine.Alias
		rows := []struct {
			name, setup, undo string
			args              []string
			code              int
			want              string
		}{
			{"not root, no sudo", `id plain >/dev/null 2>&1 || useradd -m plain; mkdir -p ~plain/.ssh; cp /root/.ssh/authorized_keys ~plain/.ssh/; chown -R plain ~plain/.ssh`, ``,
				[]string{"--target", "machine://plain@" + testmachine.Alias}, 129, "the login is not root and password-less sudo fails"},
			{"no kexec", `mv "$(command -v kexec)" /root/kexec.off`, `mv /root/kexec.off /usr/sbin/kexec`,
				[]string{"--target", target + "?boot=kexec"}, 129, "kexec is not installed there"},
			{"systemd-boot asked, GRUB booted it", ``, ``,
				[]string{"--target", target + "?boot=systemd-boot"}, 129, "not booted by systemd-boot"},
			{"no boot loader", `mv "$(command -v grub-reboot)" /root/grub-reboot.off; mv "$(command -v kexec)" /root/kexec.off`,
				`mv /root/grub-reboot.off /usr/sbin/grub-reboot; mv /root/kexec.off /usr/sbin/kexec`,
				[]string{"--target", target}, 129, "no boot loader firstbad can drive"},
			{"/boot full", `fallocate -l $(( $(df -Pk /boot | awk 'NR==2 {print $4}') - 32768 ))K /boot/fill`, `rm -f /boot/fill`,
				[]string{"--target", target}, 129, "too little space"},
			{"not a kernel config", `r=$(uname -r); mv /boot/config-$r /root/config.off; echo 'hello' > /boot/config-$r`, `mv /root/config.off /boot/config-$(uname -r)`,
				[]string{"--target", target, "--base-config", "machine"}, 128, "is not an x86 kernel config"},
			{"console ends at once", ``, ``,
				[]string{"--target", target, "--console", "echo no such console; exit 1"}, 128, "ended at once: no such console"},
			{"power command not found", ``, ``,
				[]string{"--target", target, "--power-cycle", "no-such-ipmitool chassis power cycle"}, 128, "no-such-ipmitool is not found here"},
		}
		for _, r := range rows {
			must(m.Run(ctx, r.setup+"\ntrue"))
			args := []string{"test", "--repo", k.Repo, br.bad, "--guest-test", script(t, "exit 0"), "--kconfig", k.Fragment,
				"--ssh-config", m.SSHConfig, "--base-config", base}
			res := e.run(append(args, r.args...)...)
			must(m.Run(ctx, r.undo+"\ntrue"))
			if res.Code != r.code || !strings.Contains(res.Stderr, r.want) {
				t.Errorf("%s: exit %d, stderr:\n%s\nwant exit %d and %q", r.name, res.Code, res.Stderr, r.code, r.want)
			}
			if out := must(m.Run(ctx, "ls -d /var/lib/firstbad 2>/dev/null; true")); out != "" {
				t.Errorf("%s: the machine keeps %s", r.name, out)
			}
		}
		left(t)
	})
	t.Run("bisect", func(t *testing.T) {
		// The known change among four commits on top of the test kernel's
		// tip: each candidate an incremental build with its modules, booted
		// once by GRUB's one-shot entry, judged by the guest test on the
		// machine and a host test here at once (the host test reaches the
		// machine through $FIRSTBAD_SSH: the agent's SSH server, forwarded
		// over the machine's connection). The checks after the search
		// (confirmation, revert) and the bad endpoint's test before it are
		// boots of the same kind and would triple the time: the QEMU
		// kernel tests cover them, the machine bench runs them here.
		good, culprit := br.good, br.culprit
		start := time.Now()
		res := e.run("--json", "run", "--repo", k.Repo, "--good", good, "--bad", br.bad,
			"--guest-test", script(t, machineTest), "--host-test", script(t, hostTest), "--base-config", base, "--kconfig", k.Fragment,
			"--target", "machine://"+testmachine.Alias, "--ssh-config", m.SSHConfig,
			"--console", m.ConsoleCmd, "--power-cycle", m.PowerCycle, "--boot-timeout", "4m", "--timeout", "2m",
			"--confirm=false", "--revert-check", "off", "--endpoint-check", "lazy")
		var r report
		if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
			t.Fatalf("exit %d, stdout not JSON: %v\n%s\n%s", res.Code, err, res.Stdout, res.Stderr)
		}
		t.Logf("bisect by GRUB: exit %d in %.0f s, outcome %s\n%s", res.Code, time.Since(start).Seconds(), r.Outcome, r.steps())
		if res.Code != 0 || r.Outcome != "found" || r.Culprit == nil || *r.Culprit != culprit {
			t.Fatalf("exit %d outcome %s culprit %v, want 0 found %s\n%s", res.Code, r.Outcome, r.Culprit, culprit, res.Stderr)
		}
		hostRuns := 0
		filepath.WalkDir(filepath.Join(e.state, "runs"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "host-run-1.log" {
				hostRuns++
				if data, _ := os.ReadFile(p); !strings.Contains(string(data), "-firstbad-") || !strings.Contains(string(data), "copied=firstbad") {
					t.Errorf("a host test did not reach its candidate (%s):\n%s", p, data)
				}
			}
			return nil
		})
		if hostRuns == 0 || hostRuns < len(r.Steps) {
			t.Errorf("%d host test runs for %d steps", hostRuns, len(r.Steps))
		}
		left(t)
	})
	t.Run("kexec, the VM host of a guest", func(t *testing.T) {
		// The story's second bisect: the machine's kernel is the
		// candidate (booted by kexec), the guest a fixed kernel (the test
		// kernel) in QEMU on it (nested TCG here: ~40 s to boot). The
		// guest test runs in the guest; the host test here reaches the
		// guest through $FIRSTBAD_SSH, over the machine's connection.
		const guestTest = `v=$(cat /proc/sys/kernel/sched_autogroup_enabled); echo "guest $(uname -r) autogroup=$v"; [ "$v" = 1 ]`
		r, res := machine(guestTest, "machine://"+testmachine.Alias, "--boot-method", "kexec", "--guest-kernel", k.Image,
			"--memory", "256", "--host-test", script(t, hostTest))
		if res.Code != 1 || r.Verdict != "bad" {
			t.Fatalf("exit %d verdict %s reason %q; want 1 bad\n%s", res.Code, r.Verdict, r.Reason, res.Stderr)
		}
		console, _ := os.ReadFile(r.ConsoleLog)
		if !regexp.MustCompile(`firstbad: machine: guest: VM host: \S+ \(Linux \S+-firstbad-`).Match(console) ||
			!regexp.MustCompile(`(?m)^guest \S+ autogroup=0$`).Match(console) || regexp.MustCompile(`(?m)^guest \S+-firstbad-`).Match(console) {
			t.Errorf("the guest did not run on the candidate:\n%s", machineLines(string(console)))
		}
		log, err := os.ReadFile(filepath.Join(filepath.Dir(r.ConsoleLog), "host-run-1.log"))
		if err != nil || strings.Contains(string(log), "-firstbad-") || !strings.Contains(string(log), "autogroup=0 copied=firstbad") {
			t.Fatalf("the host test did not reach the guest (%v):\n%s", err, log)
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
		cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "test", "--repo", k.Repo, br.bad,
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

// TestMachineSystemdBoot drives the test machine booted the other way a
// real one is: UEFI firmware (OVMF) and systemd-boot. doctor finds
// systemd-boot (it says so in an EFI variable) and its ESP, and leaves the
// machine as found. With FIRSTBAD_MACHINE_UEFI=1 (bench/machine-bench.sh)
// a step boots a candidate by it: the example history's tip cannot build
// with CONFIG_EFI (a Debian patch there adds drivers/firmware/efi/secureboot.o
// to the Makefile, but an earlier patch's top-level .gitignore kept the
// new file out of the generated history), so the step builds
// the base commit, a whole build with the EFI stub that systemd-boot
// needs (the target adds it): too long for CI.
func TestMachineSystemdBoot(t *testing.T) {
	k := testkernel.Get(t)
	m := testmachine.StartUEFI(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	ctx := context.Background()
	// What runs, the ESP, the one-shot choice, firstbad's manifest and lock
	// (its upload cache stays, for the next run).
	const state = `uname -r; cat /boot/efi/loader/loader.conf; ls /boot/efi /boot/efi/loader/entries /lib/modules
ls /sys/firmware/efi/efivars | grep -c '^LoaderEntryOneShot-'; cat /var/lib/firstbad/manifest /var/lib/firstbad/lock 2>/dev/null; true`
	before := must(m.Run(ctx, state))
	target := "machine://" + testmachine.Alias
	res := e.run("doctor", "--target", target, "--ssh-config", m.SSHConfig)
	t.Logf("doctor:\n%s", res.Stdout)
	if res.Code != 0 || !strings.Contains(res.Stdout, "boots candidates by systemd-boot") || !strings.Contains(res.Stdout, "EFI system partition /boot/efi") {
		t.Fatalf("doctor did not find systemd-boot and its ESP (exit %d):\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	if after := must(m.Run(ctx, state+"; ls /var/lib/firstbad 2>&1; true")); after != before+"ls: cannot access '/var/lib/firstbad': No such file or directory\n" {
		t.Errorf("doctor did not leave the machine as found:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if os.Getenv("FIRSTBAD_MACHINE_UEFI") == "" {
		return
	}
	r, res, console := machineStep(t, e, "a step by systemd-boot", "--json", "test", "--repo", k.Repo, "base", "--guest-test", script(t, machineTest),
		"--base-config", filepath.Join(filepath.Dir(k.Image), "config"), "--kconfig", k.Fragment, "--target", target, "--ssh-config", m.SSHConfig,
		"--console", m.ConsoleCmd, "--power-cycle", m.PowerCycle, "--boot-timeout", "5m", "--timeout", "2m")
	if res.Code != 0 || r.Verdict != "good" {
		t.Fatalf("exit %d verdict %s reason %q; want 0 good\n%s", res.Code, r.Verdict, r.Reason, res.Stderr)
	}
	if !strings.Contains(console, "for one boot by systemd-boot") || !strings.Contains(console, "the candidate runs") {
		t.Fatalf("the candidate was not booted by systemd-boot and proved:\n%s", machineLines(console))
	}
	if after := must(m.Run(ctx, state)); after != before {
		t.Errorf("the machine was not left as it was:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// machineStep runs a firstbad step on the machine (args with --json) and
// logs and returns its result, its exit and its console log.
func machineStep(t *testing.T, e *env, what string, args ...string) (machineResult, clitest.Result, string) {
	t.Helper()
	start := time.Now()
	res := e.run(args...)
	var r machineResult
	if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
		t.Fatalf("exit %d, stdout not JSON: %v\n%s\n%s", res.Code, err, res.Stdout, res.Stderr)
	}
	console, _ := os.ReadFile(r.ConsoleLog)
	t.Logf("%s: exit %d in %.0f s (build %.0f s, boot %.0f s): %s %s\n%s", what, res.Code, time.Since(start).Seconds(),
		deref(r.BuildS), deref(r.BootS), r.Verdict, r.Reason, machineLines(string(console)))
	return r, res, string(console)
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

// steps are the report's steps, one line each.
func (r report) steps() string {
	var b strings.Builder
	for _, st := range append(r.Endpoints, r.Steps...) {
		var console []byte
		if st.Evidence.ConsoleLog != nil {
			console, _ = os.ReadFile(*st.Evidence.ConsoleLog)
		}
		fmt.Fprintf(&b, "  %s %-4s build %6.1f s, boot+test %6.1f s, total %6.1f s\n%s", st.Commit[:12], st.Verdict,
			deref(st.Build), deref(st.Test), st.Duration, indent(machineLines(string(console))))
	}
	return b.String()
}

// branch is the machine bisect's history: four commits on top of the test
// kernel's tip (branch firstbad-machine-bisect), made with fixed dates so
// that they, and so their kernels in the artifact cache, are the same in
// every run: good reverts the known autogroup change, a README line, the
// change again (its author, date and message), another README line (bad).
type branch struct{ good, culprit, bad string }

func machineBranch(t *testing.T, repo string) branch {
	t.Helper()
	idx := filepath.Join(t.TempDir(), "index")
	git := func(stdin string, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(append(os.Environ(), "GIT_INDEX_FILE="+idx, "GIT_AUTHOR_NAME=firstbad test", "GIT_AUTHOR_EMAIL=test@firstbad",
			"GIT_COMMITTER_NAME=firstbad test", "GIT_COMMITTER_EMAIL=test@firstbad", "GIT_AUTHOR_DATE=2026-01-01T00:00:00Z",
			"GIT_COMMITTER_DATE=2026-01-01T00:00:00Z"), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	const file = "kernel/sched/autogroup.c"
	known := git("", nil, "rev-parse", "f76895681")
	off := git("", nil, "show", "tip:"+file)
	on := strings.Replace(off, "sysctl_sched_autogroup_enabled = 0;", "sysctl_sched_autogroup_enabled = 1;", 1)
	if on == off {
		t.Fatalf("%s at tip does not disable autogrouping", file)
	}
	readme := git("", nil, "show", "tip:README")
	git("", nil, "read-tree", "tip")
	parent := git("", nil, "rev-parse", "tip")
	commit := func(path, content, msg string, env ...string) string {
		blob := git(content+"\n", nil, "hash-object", "-w", "--stdin")
		git("", nil, "update-index", "--cacheinfo", "100644,"+blob+","+path)
		parent = git(msg, env, "commit-tree", git("", nil, "write-tree"), "-p", parent)
		return parent
	}
	var b branch
	b.good = commit(file, on, "Revert \"sched: Do not enable autogrouping by default\" (firstbad machine test)")
	commit("README", readme+"\nfirstbad machine test: one\n", "README: a line (firstbad machine test)")
	info := strings.SplitN(git("", nil, "show", "-s", "--format=%an%n%ae%n%aI%n%B", known), "\n", 4)
	b.culprit = commit(file, off, info[3]+"\n\n(cherry picked from commit "+known+")",
		"GIT_AUTHOR_NAME="+info[0], "GIT_AUTHOR_EMAIL="+info[1], "GIT_AUTHOR_DATE="+info[2])
	b.bad = commit("README", readme+"\nfirstbad machine test: two\n", "README: another line (firstbad machine test)")
	git("", nil, "update-ref", "refs/heads/firstbad-machine-bisect", b.bad)
	return b
}

// TestMachineBisect is the machine bisect of TestMachine with everything
// a user's run does after the search (the culprit and its parent tested
// again, the revert check), by GRUB's one-shot entry and then by kexec (the
// second run's kernels come from the artifact cache: its steps cost the
// install, the reboot and the test). bench/machine-bench.sh runs it
// (FIRSTBAD_MACHINE_BISECT=1) and prints each step's figures.
func TestMachineBisect(t *testing.T) {
	if os.Getenv("FIRSTBAD_MACHINE_BISECT") == "" {
		t.Skip("a whole machine bisect: bench/machine-bench.sh runs it (FIRSTBAD_MACHINE_BISECT=1)")
	}
	k := testkernel.Get(t)
	m := testmachine.Start(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	base := filepath.Join(filepath.Dir(k.Image), "config")
	br := machineBranch(t, k.Repo)
	for _, method := range []string{"grub", "kexec"} {
		start := time.Now()
		res := e.run("--json", "run", "--repo", k.Repo, "--good", br.good, "--bad", br.bad,
			"--guest-test", script(t, machineTest), "--base-config", base, "--kconfig", k.Fragment,
			"--target", "machine://"+testmachine.Alias+"?boot="+method, "--ssh-config", m.SSHConfig,
			"--console", m.ConsoleCmd, "--power-cycle", m.PowerCycle, "--boot-timeout", "5m")
		var r report
		if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
			t.Fatalf("%s: exit %d, stdout not JSON: %v\n%s\n%s", method, res.Code, err, res.Stdout, res.Stderr)
		}
		if r.Culprit == nil || *r.Culprit != br.culprit || r.Outcome != "found" {
			t.Fatalf("%s: outcome %s culprit %v, want found %s\n%s", method, r.Outcome, r.Culprit, br.culprit, res.Stderr)
		}
		fmt.Printf("machine bisect by %s, with the checks: found %s in %.0f s\n%s", method, br.culprit[:12], time.Since(start).Seconds(), r.steps())
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "      " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ") + "\n"
}
