package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/artstore/davtest"
	"github.com/firstbad/firstbad/internal/clitest"
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
	BuildS     *float64 `json:"build_s"`
	GuestRoot  string   `json:"guest_root"`
	Runs       []struct {
		Verdict string `json:"verdict"`
	} `json:"runs"`
}

func script(t *testing.T, body string) string { return clitest.Script(t, body) }

// bootWants runs firstbad boot with args and fails the test unless it
// exits code with the verdict and a reason containing reason (showing the
// console's end if not).
func bootWants(t *testing.T, e *env, args []string, code int, verdict, reason string) bootResult {
	t.Helper()
	res := e.run(append([]string{"--json", "boot"}, args...)...)
	var r bootResult
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		t.Fatalf("exit %d, stdout not JSON: %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	if res.code != code || r.Verdict != verdict || !strings.Contains(r.Reason, reason) {
		console, _ := os.ReadFile(r.ConsoleLog)
		t.Fatalf("exit %d verdict %s reason %q; want %d %s %q\nstderr: %s\nconsole:\n%s", res.code, r.Verdict, r.Reason,
			code, verdict, reason, res.stderr, tailText(string(console), 30))
	}
	return r
}

// procs lists the live processes whose command line (arguments joined by
// NULs) satisfies match.
func procs(match func(cmdline string) bool) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && match(string(cmdline)) && alive(e.Name()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// qemuPids lists running QEMU processes whose command line mentions dir.
func qemuPids(dir string) []int {
	return procs(func(cmdline string) bool {
		argv0, _, _ := strings.Cut(cmdline, "\x00")
		return strings.Contains(filepath.Base(argv0), "qemu-system") && strings.Contains(cmdline, dir)
	})
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
		// microvm: the same kernel (it has virtio-mmio too) on virtio-mmio
		// devices, no PCI device, no ACPI; each VM ends by a reset.
		{"microvm", microvmTest, []string{"--machine", "microvm", "--repeat", "2", "--reboot-each"}, 0, "good", ""},
		{"microvm panic", "echo c > /proc/sysrq-trigger; sleep 10", []string{"--machine", "microvm"}, 1, "bad", "crash: Kernel panic - not syncing: sysrq triggered crash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := bootWants(t, e, append([]string{"--kernel", k.Image, "--guest-test", script(t, c.test)}, c.args...), c.code, c.verdict, c.reason)
			if _, err := os.Stat(r.ConsoleLog); err != nil {
				t.Errorf("no console log as evidence: %v", err)
			}
			if i := slices.Index(c.args, "--repeat"); i >= 0 && strconv.Itoa(len(r.Runs)) != c.args[i+1] {
				t.Errorf("%d runs, want %s", len(r.Runs), c.args[i+1])
			}
			t.Logf("%s: %.1fs (boot %v)", c.name, time.Since(start).Seconds(), deref(r.BootS))
			if pids := qemuPids(e.state); len(pids) > 0 {
				t.Errorf("QEMU still running after the command: %v", pids)
			}
		})
	}
}

// microvmTest passes on QEMU's microvm only.
const microvmTest = `set -e
grep -q virtio_mmio.device= /proc/cmdline
[ -z "$(ls /sys/bus/pci/devices)" ]
[ ! -e /sys/firmware/acpi ]
ls /sys/bus/virtio/devices | grep -q virtio
`

// --artifact-store: a machine that has a kernel shares it (here the test
// kernel, from the artifact cache), and another machine — a fresh cache
// dir, its own clone and build dir — takes it from the store (nginx with
// WebDAV) after checking it, without running make.
func TestArtifactStore(t *testing.T) {
	k := testkernel.Get(t)
	url, _ := davtest.Start(t)
	type build struct {
		Key      string `json:"key"`
		Cached   bool   `json:"cached"`
		Compiled int    `json:"compiled"`
		Log      string `json:"build_log"`
	}
	run := func(e *env) build {
		t.Helper()
		res := e.run("--json", "build", "--repo", k.Repo, "tip", "--kconfig", k.Fragment, "--artifact-store", url+"/kernels")
		var b build
		if err := json.Unmarshal([]byte(res.stdout), &b); err != nil || res.code != 0 {
			t.Fatalf("build: exit %d (%v)\n%s\n%s", res.code, err, res.stdout, res.stderr)
		}
		return b
	}
	here := newEnv(t)
	here.cache = k.CacheDir
	shared := run(here)
	start := time.Now()
	b := run(newEnv(t))
	log, _ := os.ReadFile(b.Log)
	if b.Key != shared.Key || !b.Cached || b.Compiled != 0 || !strings.Contains(string(log), "from the artifact store") {
		t.Fatalf("the other machine: key %s cached %v compiled %d, want %s from the store without make\n%s", b.Key, b.Cached, b.Compiled, shared.Key, tailText(string(log), 10))
	}
	t.Logf("the other machine had the kernel in %.0f s (clone, checkout, config, fetch)", time.Since(start).Seconds())
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
	// A commit that changes only what the build does not read (the
	// README) takes tip's kernel: no make.
	readme := commitOnTip(t, k.Repo, "README", "firstbad: a line no build reads", "firstbad-readme")
	res = e.run("--json", "build", "--repo", k.Repo, readme, "--kconfig", k.Fragment)
	tipSHA := strings.TrimSpace(gitOut(t, k.Repo, "rev-parse", "tip"))
	if res.code != 0 || !strings.Contains(res.stdout, `"same_as": "`+tipSHA+`"`) {
		t.Fatalf("build of a README change: exit %d, want tip's kernel (same_as %s)\n%s\n%s", res.code, tipSHA, res.stdout, res.stderr)
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

// A commit whose kernel an earlier step tested takes that step's verdict,
// without a boot: the history's last commit changes a driver outside the
// test config, so its parent builds the same kernel (kbuild's same-kernel
// reuse) and, for a test that only sees the kernel, tests the same. Here
// the test fails everywhere, so the good endpoint, checked last, is bad
// too: the run ends on the mismatch after one boot, not two.
func TestKernelRunSameKernelVerdict(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	r, res := e.runJSON("run", "--repo", k.Repo, "--good", "tip~1", "--bad", "tip", "--guest-test", script(t, "exit 1"),
		"--kconfig", k.Fragment)
	if r.Outcome != "endpoint-mismatch" || len(r.Endpoints) != 2 {
		t.Fatalf("exit %d outcome %s endpoints %+v, want endpoint-mismatch after two endpoint steps\n%s", res.code, r.Outcome, r.Endpoints, res.stderr)
	}
	bad, good := r.Endpoints[0], r.Endpoints[1]
	if bad.Verdict != "bad" || bad.Boot == nil {
		t.Errorf("the bad endpoint: verdict %s, boot %v; want bad, booted", bad.Verdict, bad.Boot)
	}
	if good.Verdict != "bad" || good.Boot != nil || !strings.Contains(good.Reason, "same kernel as "+bad.Commit[:12]) {
		t.Errorf("the good endpoint: verdict %s, boot %v, reason %q; want bad without a boot, the same kernel as the bad one", good.Verdict, good.Boot, good.Reason)
	}
}

// TestKernelRunKillDuringTestAndResume kills the controller while the guest
// test runs on the kernel path, then resumes: no QEMU is left behind, the
// killed step's kernel comes from the artifact cache instead of a rebuild,
// and the run finishes with the culprit. The range is the history's last
// commit, a driver outside the test config: its image is byte-identical to
// its parent's, which the confirmation must flag. The test tells the two
// apart by $FIRSTBAD_COMMIT, so it must say --retest-same-kernel.
func TestKernelRunKillDuringTestAndResume(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	tip := strings.TrimSpace(gitOut(t, k.Repo, "rev-parse", "tip"))
	test := script(t, fmt.Sprintf(`sleep 4; [ "$FIRSTBAD_COMMIT" = %s ] && exit 1; exit 0`, tip))
	args := []string{"--state-dir", e.state, "--cache-dir", e.cache, "run", "--repo", k.Repo, "--good", "tip~1", "--bad", "tip",
		"--guest-test", test, "--kconfig", k.Fragment, "--endpoint-check", "upfront", "--retest-same-kernel"}
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
	// The tip's change cannot matter to this config (its image is its
	// parent's, and its build read none of the files it changes): the
	// culprit is named, flagged, and the run is suspect.
	r, res := e.runJSON("resume")
	if res.code != 1 || r.Outcome != "suspect" || r.Culprit == nil || *r.Culprit != tip || !hasFlag(t, res.stdout, "identical-image") ||
		!hasFlag(t, res.stdout, "not-read") {
		t.Fatalf("resume: exit %d outcome %s culprit %v\n%s", res.code, r.Outcome, r.Culprit, res.stderr)
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

// sshLeft lists ssh/scp processes still using one of firstbad's per-boot
// SSH configs.
func sshLeft() []int {
	return procs(func(cmdline string) bool { return strings.Contains(cmdline, "firstbad-ssh-") })
}

func TestHostTests(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	cases := []struct {
		name    string
		host    string // host test body
		guest   string // guest test body ("" for none)
		args    []string
		code    int
		verdict string
		reason  string
	}{
		// The host reaches the guest with $FIRSTBAD_SSH; exit statuses
		// come back; uname -r is the booted kernel's release.
		{"ssh exec", `r=$($FIRSTBAD_SSH uname -r) || exit 9
case "$r" in 6.*) ;; *) echo "uname -r: $r"; exit 8;; esac
$FIRSTBAD_SSH 'exit 7'; [ $? = 7 ] || exit 6
$FIRSTBAD_SSH 'test -f /firstbad/settings.json' || exit 5`, "", nil, 0, "good", "exit 0"},
		// scp (SFTP) of 64 MiB to /dev/null and back from the guest.
		{"scp both ways", `head -c 67108864 /dev/urandom > big || exit 9
scp -F "$FIRSTBAD_SSH_CONFIG" big guest:/dev/null || exit 8
scp -F "$FIRSTBAD_SSH_CONFIG" big guest:/tmp/big || exit 7
scp -F "$FIRSTBAD_SSH_CONFIG" guest:/tmp/big back || exit 6
cmp big back || exit 5`, "", []string{"--memory", "768"}, 0, "good", "exit 0"},
		// Both halves at once: the guest test sees the host's traffic.
		{"guest and host together", `$FIRSTBAD_SSH 'echo from-host > /tmp/mark'; exit 0`,
			`for i in $(seq 100); do [ -f /tmp/mark ] && exit 1; sleep 0.1; done; exit 0`, nil, 1, "bad", "guest: exit 1; host: exit 0"},
		// The guest takes its network down mid-copy: the copy stalls and
		// the host test's deadline makes it a hang.
		{"stalled copy is a hang", `head -c 67108864 /dev/zero > big; scp -F "$FIRSTBAD_SSH_CONFIG" big guest:/dev/null; exit 0`,
			`ip link set eth0 down; sleep 600`, []string{"--timeout", "15s"}, 1, "bad", "hang: the host test did not finish"},
		// No NIC (PCI off): SSH never answers: a skip with the reason.
		// The boot timeout also bounds the agent's start: under load a
		// boot took more than 8 s to get there.
		{"unreachable", `$FIRSTBAD_SSH true`, "", []string{"--append", "pci=off", "--boot-timeout", "20s"}, 125, "skip", "guest SSH not reachable"},
		{"unreachable is bad", `$FIRSTBAD_SSH true`, "", []string{"--append", "pci=off", "--boot-timeout", "20s", "--unreachable", "bad"}, 1, "bad", "guest SSH not reachable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			args := []string{"--json", "boot", "--kernel", k.Image, "--host-test", script(t, c.host)}
			if c.guest != "" {
				args = append(args, "--guest-test", script(t, c.guest))
			}
			res := e.run(append(args, c.args...)...)
			var r bootResult
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
				t.Fatalf("exit %d, stdout not JSON: %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
			}
			if res.code != c.code || r.Verdict != c.verdict || !strings.Contains(r.Reason, c.reason) {
				console, _ := os.ReadFile(r.ConsoleLog)
				hostLog, _ := os.ReadFile(filepath.Join(filepath.Dir(r.ConsoleLog), "host-run-1.log"))
				t.Fatalf("exit %d verdict %s reason %q; want %d %s %q\nstderr: %s\nhost test output:\n%s\nconsole:\n%s", res.code, r.Verdict, r.Reason,
					c.code, c.verdict, c.reason, res.stderr, hostLog, tailText(string(console), 20))
			}
			t.Logf("%s: %.1fs", c.name, time.Since(start).Seconds())
			if pids := qemuPids(e.state); len(pids) > 0 {
				t.Errorf("QEMU still running after the command: %v", pids)
			}
			if left := sshLeft(); len(left) > 0 {
				t.Errorf("ssh processes left: %v", left)
			}
		})
	}
	// Bad input: a host test that is not executable.
	noexec := filepath.Join(t.TempDir(), "t.sh")
	os.WriteFile(noexec, []byte("exit 0\n"), 0o644)
	res := e.run("boot", "--kernel", k.Image, "--host-test", noexec)
	if res.code != 128 || !strings.Contains(res.stderr, "not an executable") {
		t.Errorf("non-executable host test: exit %d, stderr %q", res.code, res.stderr)
	}
}

// uniqueCommit adds a commit on top of tip to the test history (on branch
// firstbad-kill-test, without touching any work tree) that changes a comment
// in init/version.c: its kernel is new to the artifact cache, so a real,
// incremental make runs each time the test does.
func uniqueCommit(t *testing.T, repo string) string {
	return commitOnTip(t, repo, "init/version.c", fmt.Sprintf("/* firstbad kill test %d */", time.Now().UnixNano()), "firstbad-kill-test")
}

// commitOnTip adds a commit on top of tip on branch that appends line to
// path, without touching any work tree.
func commitOnTip(t *testing.T, repo, path, line, branch string) string {
	t.Helper()
	return commitEdits(t, repo, branch, path+": a line ("+branch+")", edit{path, line})
}

// edit adds a line at the end of a file.
type edit struct{ path, line string }

// commitEdits makes a commit on tip with the edits, on branch (the
// repository's work tree and index untouched).
func commitEdits(t *testing.T, repo, branch, msg string, edits ...edit) string {
	t.Helper()
	idx := filepath.Join(t.TempDir(), "index")
	git := func(stdin string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "GIT_INDEX_FILE="+idx, "GIT_AUTHOR_NAME=firstbad test", "GIT_AUTHOR_EMAIL=test@firstbad",
			"GIT_COMMITTER_NAME=firstbad test", "GIT_COMMITTER_EMAIL=test@firstbad")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	git("", "read-tree", "tip")
	for _, e := range edits {
		src := git("", "show", "tip:"+e.path)
		blob := git(fmt.Sprintf("%s\n%s\n", src, e.line), "hash-object", "-w", "--stdin")
		git("", "update-index", "--cacheinfo", "100644,"+blob+","+e.path)
	}
	commit := git("", "commit-tree", git("", "write-tree"), "-p", "tip", "-m", msg)
	git("", "update-ref", "refs/heads/"+branch, commit)
	return commit
}

// makePids lists running make processes building in a dir under cacheDir.
func makePids(cacheDir string) []int {
	return procs(func(cmdline string) bool {
		return strings.HasPrefix(cmdline, "make\x00") && strings.Contains(cmdline, "O="+cacheDir) && strings.Contains(cmdline, "\x00bzImage")
	})
}

// TestKernelRunKillDuringBuildAndBoot kills the controller with SIGKILL
// while make builds the bad commit's kernel, and again while QEMU boots it.
// Each resume stops what the killed controller left running (make, QEMU),
// the half-done build is cleaned and finished incrementally, the finished
// build is reused, and the run ends with the right culprit.
func TestKernelRunKillDuringBuildAndBoot(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	bad := uniqueCommit(t, k.Repo)
	test := script(t, fmt.Sprintf(`[ "$FIRSTBAD_COMMIT" = %s ] && exit 1; exit 0`, bad))
	start := func(args ...string) *exec.Cmd {
		cmd := exec.Command(binary, append([]string{"--state-dir", e.state, "--cache-dir", e.cache}, args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// killWhen SIGKILLs the controller once ready returns something.
	killWhen := func(cmd *exec.Cmd, what string, ready func() []int) []int {
		t.Helper()
		// Generous: on a cold machine the machine tests (another package,
		// run at the same time) may hold the warm checkout, and this build
		// starts in a fresh build dir of another slot — a copy of the
		// first slot's (69 s in a cold CI run), or, where none recorded
		// its tree, 1,200+ compiler runs sharing two cores with the
		// machine's build (once over 15 minutes).
		for deadline := time.Now().Add(30 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if pids := ready(); len(pids) > 0 {
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				return pids
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%s never started", what)
		return nil
	}

	// bad only adds a comment: its image is tip's, byte for byte, and the
	// test tells them apart by $FIRSTBAD_COMMIT (--retest-same-kernel).
	cmd := start("run", "--repo", k.Repo, "--good", "tip", "--bad", bad, "--guest-test", test, "--kconfig", k.Fragment, "--endpoint-check", "upfront",
		"--retest-same-kernel")
	makes := killWhen(cmd, "make bzImage", func() []int {
		// Compiling now: make has written an object (a kill during its
		// first walk of the tree would leave nothing to clean up).
		logs, _ := filepath.Glob(filepath.Join(e.state, "runs", "*", "steps", "*", "build.log"))
		for _, l := range logs {
			if data, _ := os.ReadFile(l); bytes.Contains(data, []byte("\n  CC ")) {
				return makePids(k.CacheDir)
			}
		}
		return nil
	})
	// The kill landed mid-build: make is an orphan now, until a firstbad
	// using this cache dir starts and stops it.
	if !alive(strconv.Itoa(makes[0])) {
		t.Fatal("make ended with its controller: the test did not kill during the build")
	}
	cmd = start("resume")
	killWhen(cmd, "QEMU", func() []int { return qemuPids(e.state) })
	if left := makePids(k.CacheDir); len(left) > 0 {
		t.Errorf("make of the killed build still runs: %v", left)
	}

	// The culprit only adds a comment: named, flagged, suspect.
	r, res := e.runJSON("resume")
	if res.code != 1 || r.Outcome != "suspect" || r.Culprit == nil || *r.Culprit != bad || !hasFlag(t, res.stdout, "whitespace-or-comments-only") {
		t.Fatalf("resume: exit %d outcome %s culprit %v\n%s", res.code, r.Outcome, r.Culprit, res.stderr)
	}
	if pids := qemuPids(e.state); len(pids) > 0 {
		t.Errorf("QEMU left running: %v", pids)
	}
	// The bad endpoint: killed in its build, killed in its boot, then bad
	// (from the artifact cache); then the good one.
	verdicts := []string{}
	for _, s := range r.Endpoints {
		verdicts = append(verdicts, s.Verdict)
	}
	if diff := cmp.Diff([]string{"error", "error", "bad", "good"}, verdicts); diff != "" {
		t.Fatalf("endpoint verdicts (-want +got):\n%s", diff)
	}
	logs := map[int]string{}
	for i := 1; i <= 3; i++ {
		data, _ := os.ReadFile(filepath.Join(e.state, "runs", r.RunID, "steps", strconv.Itoa(i), "build.log"))
		logs[i] = string(data)
	}
	if !strings.Contains(logs[2], "the last build in this dir was interrupted") || strings.Contains(logs[2], "from the artifact cache") {
		t.Errorf("the first resume did not clean up and finish the killed build:\n%s", tailText(logs[2], 8))
	}
	if !strings.Contains(logs[3], "from the artifact cache") {
		t.Errorf("the second resume rebuilt the kernel:\n%s", tailText(logs[3], 5))
	}
}

// hasFlag reports whether a JSON report flags its culprit with kind.
func hasFlag(t *testing.T, report, kind string) bool {
	t.Helper()
	var r struct {
		Flags []struct{ Kind string } `json:"culprit_flags"`
	}
	if err := json.Unmarshal([]byte(report), &r); err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Flags {
		if f.Kind == kind {
			return true
		}
	}
	t.Logf("flags %+v, want %s", r.Flags, kind)
	return false
}
