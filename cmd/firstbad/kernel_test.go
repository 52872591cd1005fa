package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/testkernel"
)

// bootResult is the JSON of firstbad boot/test.
type bootResult struct {
	Verdict    string   `json:"verdict"`
	Reason     string   `json:"reason"`
	Crash      *string  `json:"crash"`
	ExitCode   int      `json:"exit_code"`
	BootS      *float64 `json:"boot_s"`
	ConsoleLog string   `json:"console_log"`
	Runs       []struct {
		Verdict string `json:"verdict"`
	} `json:"runs"`
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// qemuPids lists running QEMU processes whose command line mentions dir.
func qemuPids(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), "qemu-system") || !strings.Contains(string(cmdline), dir) {
			continue
		}
		if alive(e.Name()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestBootClassifications(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir // share the probe answer and initramfs cache
	cases := []struct {
		name    string
		test    string
		args    []string
		code    int
		verdict string
		reason  string
	}{
		{"good", "echo hello from the guest; exit 0", nil, 0, "good", "exit 0"},
		{"bad", "exit 3", nil, 1, "bad", "exit 3"},
		{"skip", "exit 125", nil, 125, "skip", "exit 125"},
		{"hang", "sleep 600", []string{"--timeout", "3s"}, 1, "bad", "hang"},
		{"panic", "echo c > /proc/sysrq-trigger; sleep 10", nil, 1, "bad", "crash: Kernel panic - not syncing: sysrq triggered crash"},
		{"boot failure", "exit 0", []string{"--append", "rdinit=/nonexistent"}, 125, "skip", "boot failure"},
		{"boot failure is bad", "exit 0", []string{"--append", "rdinit=/nonexistent", "--boot-failure", "bad"}, 1, "bad", "boot failure"},
		{"repeat in one boot", `[ "$FIRSTBAD_RUN" = 2 ] && exit 1; exit 0`, []string{"--repeat", "3"}, 1, "bad", ""},
		{"reboot each", `[ "$FIRSTBAD_RUN" = 3 ] && exit 1; exit 0`, []string{"--repeat", "3", "--reboot-each"}, 1, "bad", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			res := e.run(append([]string{"--json", "boot", "--kernel", k.Image, "--guest-test", script(t, c.test)}, c.args...)...)
			var r bootResult
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
				t.Fatalf("exit %d, stdout not JSON: %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
			}
			if res.code != c.code || r.Verdict != c.verdict || !strings.Contains(r.Reason, c.reason) {
				console, _ := os.ReadFile(r.ConsoleLog)
				t.Fatalf("exit %d verdict %s reason %q; want %d %s %q\nstderr: %s\nconsole:\n%s", res.code, r.Verdict, r.Reason,
					c.code, c.verdict, c.reason, res.stderr, tailText(string(console), 30))
			}
			if _, err := os.Stat(r.ConsoleLog); err != nil {
				t.Errorf("no console log as evidence: %v", err)
			}
			if len(c.args) > 0 && c.args[0] == "--repeat" && len(r.Runs) != 3 {
				t.Errorf("%d runs, want 3", len(r.Runs))
			}
			t.Logf("%s: %.1fs (boot %v)", c.name, time.Since(start).Seconds(), deref(r.BootS))
			if pids := qemuPids(e.state); len(pids) > 0 {
				t.Errorf("QEMU still running after the command: %v", pids)
			}
		})
	}
}

func TestQEMUKilledFromOutsideIsInfra(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "boot", "--kernel", k.Image,
		"--guest-test", script(t, "sleep 60"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	killed := false
	for time.Now().Before(deadline) && !killed {
		time.Sleep(500 * time.Millisecond)
		if pids := qemuPids(e.state); len(pids) > 0 {
			time.Sleep(3 * time.Second) // let the guest start its test
			syscall.Kill(pids[0], syscall.SIGKILL)
			killed = true
		}
	}
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if !killed || code != 129 {
		t.Fatalf("killed=%v exit %d, want 129 (infrastructure error)\n%s", killed, code, out.String())
	}
}

func TestTestCommandAndBuildSkip(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	// tip turned autogrouping off: the shipped example test says bad.
	example := filepath.Join("..", "..", "examples", "autogroup", "test.sh")
	res := e.run("--json", "test", "--repo", k.Repo, "tip", "--guest-test", example, "--kconfig", k.Fragment)
	var r bootResult
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil || res.code != 1 || r.Verdict != "bad" {
		t.Fatalf("test tip: exit %d verdict %q (%v)\n%s\n%s", res.code, r.Verdict, err, res.stdout, res.stderr)
	}
	// An option no commit has: a skip naming it, exit 1.
	frag := filepath.Join(t.TempDir(), "frag.config")
	os.WriteFile(frag, []byte(testkernel.Fragment+"CONFIG_FIRSTBAD_NO_SUCH_OPTION=y\n"), 0o644)
	res = e.run("--json", "build", "--repo", k.Repo, "tip", "--kconfig", frag)
	var b struct {
		Verdict string   `json:"verdict"`
		Reason  string   `json:"reason"`
		Missing []string `json:"missing_options"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &b); err != nil {
		t.Fatalf("build: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	if res.code != 1 || b.Verdict != "skip" || len(b.Missing) != 1 || b.Missing[0] != "CONFIG_FIRSTBAD_NO_SUCH_OPTION" {
		t.Fatalf("build with an impossible option: exit %d %+v", res.code, b)
	}
	// The test kernel's own config builds (from the artifact cache).
	res = e.run("--json", "build", "--repo", k.Repo, "tip", "--kconfig", k.Fragment)
	if res.code != 0 || !strings.Contains(res.stdout, `"cached": true`) {
		t.Fatalf("build of a cached kernel: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
}

func tailText(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestDynamicBinaryRefusesToBoot(t *testing.T) {
	k := testkernel.Get(t)
	dyn := filepath.Join(t.TempDir(), "firstbad-dynamic")
	build := exec.Command("go", "build", "-o", dyn, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, _ := exec.Command("file", dyn).Output(); !strings.Contains(string(out), "dynamically linked") {
		t.Skipf("this toolchain built a static binary even with cgo: %s", out)
	}
	cmd := exec.Command(dyn, "--state-dir", t.TempDir(), "--cache-dir", t.TempDir(), "boot", "--kernel", k.Image, "--guest-test", script(t, "exit 0"))
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 128 || !strings.Contains(string(out), "dynamically linked") {
		t.Fatalf("a dynamic firstbad booted or failed unclearly: %v\n%s", err, out)
	}
}

// TestKernelRunKillDuringTestAndResume kills the controller while the guest
// test runs on the kernel path, then resumes: no QEMU is left behind, the
// killed step's kernel comes from the artifact cache instead of a rebuild,
// and the run finishes with the culprit. The range is the history's last
// commit, a driver outside the test config: its image is byte-identical to
// its parent's, which the confirmation must flag.
func TestKernelRunKillDuringTestAndResume(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	tip := strings.TrimSpace(gitOut(t, k.Repo, "rev-parse", "tip"))
	test := script(t, fmt.Sprintf(`sleep 4; [ "$FIRSTBAD_COMMIT" = %s ] && exit 1; exit 0`, tip))
	args := []string{"--state-dir", e.state, "--cache-dir", e.cache, "run", "--repo", k.Repo, "--good", "tip~1", "--bad", "tip",
		"--guest-test", test, "--kconfig", k.Fragment, "--endpoint-check", "upfront"}
	cmd := exec.Command(binary, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline) && !killed; time.Sleep(200 * time.Millisecond) {
		if len(qemuPids(e.state)) > 0 {
			time.Sleep(3 * time.Second) // the guest is in its test now
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatal("QEMU never started")
	}
	r, res := e.runJSON("resume")
	if res.code != 0 || r.Culprit == nil || *r.Culprit != tip {
		t.Fatalf("resume: exit %d culprit %v\n%s", res.code, r.Culprit, res.stderr)
	}
	if pids := qemuPids(e.state); len(pids) > 0 {
		t.Errorf("QEMU left running: %v", pids)
	}
	// The bad endpoint was cut short, then tested again without a rebuild.
	if len(r.Endpoints) != 3 || r.Endpoints[0].Verdict != "error" || r.Endpoints[1].Verdict != "bad" || r.Endpoints[2].Verdict != "good" {
		t.Fatalf("endpoints: %+v", r.Endpoints)
	}
	log, _ := os.ReadFile(filepath.Join(e.state, "runs", r.RunID, "steps", "2", "build.log"))
	if !strings.Contains(string(log), "from the artifact cache") {
		t.Errorf("the resumed step rebuilt its kernel:\n%s", tailText(string(log), 5))
	}
	var c struct {
		Confirmed      bool `json:"confirmed"`
		IdenticalImage bool `json:"identical_image"`
	}
	data, _ := json.Marshal(r.Confirm)
	if err := json.Unmarshal(data, &c); err != nil || !c.Confirmed || !c.IdenticalImage {
		t.Errorf("confirmation %s: want confirmed with a byte-identical image", data)
	}
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return string(out)
}
