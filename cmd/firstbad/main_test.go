package main_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/clitest"
	"github.com/firstbad/firstbad/internal/gittest"
	"github.com/firstbad/firstbad/internal/lock"
)

var binary string

func TestMain(m *testing.M) { clitest.Main(m, ".", &binary) }

// long skips a test in -short mode: it takes over ten seconds here (the
// full suite runs it).
func long(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow: not in -short mode")
	}
}

// env is one isolated firstbad installation: its own state and cache dirs.
type env struct {
	t     *testing.T
	state string
	cache string
}

func newEnv(t *testing.T) *env {
	return &env{t: t, state: t.TempDir(), cache: t.TempDir()}
}

type result struct {
	code   int
	stdout string
	stderr string
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	r := clitest.Run(e.t, binary, append([]string{"--state-dir", e.state, "--cache-dir", e.cache}, args...)...)
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr}
}

// report is the CLI contract's JSON object.
type report struct {
	RunID      string            `json:"run_id"`
	Outcome    string            `json:"outcome"`
	Culprit    *string           `json:"culprit"`
	Candidates []string          `json:"candidates"`
	Terms      map[string]string `json:"terms"`
	Endpoints  []step            `json:"endpoints"`
	Steps      []step            `json:"steps"`
	Confirm    any               `json:"confirmation"`
	Message    string            `json:"message"`
}

type step struct {
	Commit   string   `json:"commit"`
	Subject  string   `json:"subject"`
	Verdict  string   `json:"verdict"`
	Reason   string   `json:"reason"`
	Duration float64  `json:"duration_s"`
	Build    *float64 `json:"build_s"`
	Boot     *float64 `json:"boot_s"`
	Test     *float64 `json:"test_s"`
	Crash    *string  `json:"crash"`
	Runs     []struct {
		Verdict  string `json:"verdict"`
		ExitCode int    `json:"exit_code"`
	} `json:"runs"`
	Evidence struct {
		TestOutput *string `json:"test_output"`
	} `json:"evidence"`
}

func (e *env) runJSON(args ...string) (report, result) {
	e.t.Helper()
	res := e.run(append([]string{"--json"}, args...)...)
	var r report
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		e.t.Fatalf("stdout is not one JSON object (%v):\n%s\nstderr:\n%s", err, res.stdout, res.stderr)
	}
	return r, res
}

func tested(r report) []string {
	var out []string
	for _, s := range r.Steps {
		out = append(out, s.Commit)
	}
	return out
}

// snapshot fingerprints everything of a user's repository that firstbad
// must not change: HEAD, index, status, refs, stash, and every file's
// content and mode (work tree and .git; atimes are not compared).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for _, args := range [][]string{{"rev-parse", "HEAD"}, {"status", "--porcelain=v2", "--branch"},
		{"for-each-ref"}, {"stash", "list"}, {"symbolic-ref", "-q", "HEAD"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
		out, _ := cmd.CombinedOutput()
		snap["git "+strings.Join(args, " ")] = string(out)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			snap[rel] = "dir " + info.Mode().String()
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		snap[rel] = info.Mode().String() + " " + hex.EncodeToString(sum[:]) + " " + info.ModTime().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// culpritScript exits bad on descendants of culprit; it logs each commit it
// sees to logf (one line per run).
func culpritScript(culprit, logf string) string {
	return fmt.Sprintf(`echo "$FIRSTBAD_COMMIT $FIRSTBAD_STEP $FIRSTBAD_RUN" >> %s; git merge-base --is-ancestor %s HEAD && exit 1; exit 0`, logf, culprit)
}

func TestRunMatchesGitBisectOn1000CommitsWithMerges(t *testing.T) {
	long(t)
	var b gittest.Builder
	root := b.Linear(-1, 5)
	tip := b.MergeHeavy(root, 1000, 42)
	repo := b.Write(t)
	e := newEnv(t)
	for _, n := range []int{17, 503, 911} {
		culprit := repo.SHAs[n]
		script := fmt.Sprintf("git merge-base --is-ancestor %s HEAD && exit 1; exit 0", culprit)
		want := gittest.BisectRun(t, repo.Dir, []string{repo.SHAs[tip], repo.SHAs[1]}, script)
		r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c1", "--bad", "main", "--exec", script)
		if res.code != 0 || r.Outcome != "found" {
			t.Fatalf("exit %d outcome %q\n%s", res.code, r.Outcome, res.stderr)
		}
		if diff := cmp.Diff(want.Tested, tested(r)); diff != "" {
			t.Errorf("culprit c%d: tested commits differ from git bisect run (-git +firstbad):\n%s", n, diff)
		}
		if *r.Culprit != want.Culprit || want.Culprit != culprit {
			t.Errorf("culprit %s, git %s, want %s", *r.Culprit, want.Culprit, culprit)
		}
		t.Logf("culprit c%d: %d steps, same as git bisect run", n, len(r.Steps))
	}
}

func TestUserRepoUntouched(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 30)
	repo := b.Write(t)
	// A dirty, detached checkout with a stash and untracked files.
	gittest.Git(t, repo.Dir, "checkout", "-q", "--detach", "c10")
	os.WriteFile(filepath.Join(repo.Dir, "f"), []byte("local edit\n"), 0o644)
	gittest.Git(t, repo.Dir, "stash", "-q")
	os.WriteFile(filepath.Join(repo.Dir, "f"), []byte("another edit\n"), 0o644)
	os.WriteFile(filepath.Join(repo.Dir, "untracked"), []byte("x\n"), 0o644)
	before := snapshot(t, repo.Dir)

	e := newEnv(t)
	logf := filepath.Join(t.TempDir(), "log")
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec",
		culpritScript(repo.SHAs[20], logf)+"; touch junk")
	if res.code != 0 || *r.Culprit != repo.SHAs[20] {
		t.Fatalf("exit %d culprit %v\n%s", res.code, r.Culprit, res.stderr)
	}
	for _, args := range [][]string{{"log"}, {"report", "--format", "html"}, {"status"}, {"list"}} {
		if res := e.run(args...); res.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, res.code, res.stderr)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, repo.Dir)); diff != "" {
		t.Fatalf("the user's repository changed (-before +after):\n%s", diff)
	}
}

func TestBadInput(t *testing.T) {
	var b gittest.Builder
	base := b.Linear(-1, 10)
	side := b.Linear(base-5, 3) // not an ancestor of main's tip
	tip := b.Linear(base, 5)
	repo := b.Write(t)
	gittest.Git(t, repo.Dir, "update-ref", "refs/heads/--help", repo.SHAs[tip])
	notRepo := t.TempDir()
	notLog := filepath.Join(t.TempDir(), "notalog")
	os.WriteFile(notLog, []byte("hello world\n"), 0o644)
	roDir := filepath.Join(t.TempDir(), "ro")
	os.WriteFile(roDir, []byte("a file, not a dir"), 0o644)
	before := snapshot(t, repo.Dir)
	e := newEnv(t)
	base_ := []string{"run", "--repo", repo.Dir}
	cases := []struct {
		name string
		args []string
		want string
		code int // 0: 2 (128 for boot)
	}{
		{"unknown ref", append(base_, "--good", "nosuchref", "--bad", "main", "--exec", "true"), `unknown ref "nosuchref"`, 0},
		{"good not ancestor", append(base_, "--good", fmt.Sprintf("c%d", side), "--bad", "main", "--exec", "true"), "is not an ancestor", 0},
		{"good newer than bad", append(base_, "--good", "main", "--bad", "c0", "--exec", "true"), "--fix", 0},
		{"good equals bad", append(base_, "--good", "main", "--bad", "main", "--exec", "true"), "the same", 0},
		{"no exec", append(base_, "--good", "c0", "--bad", "main"), "--exec", 0},
		{"not a repo", []string{"run", "--repo", notRepo, "--good", "c0", "--bad", "main", "--exec", "true"}, "not a git repository", 0},
		{"missing repo", []string{"run", "--repo", notRepo + "/nope", "--good", "c0", "--bad", "main", "--exec", "true"}, "not a git repository", 0},
		{"not a bisect log", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--from-log", notLog), "not a git bisect log", 0},
		{"missing log", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--from-log", notLog+"x"), "--from-log", 0},
		{"state dir not writable", []string{"--state-dir", roDir + "/sub", "run", "--repo", repo.Dir, "--good", "c0", "--bad", "main", "--exec", "true"}, "--state-dir", 0},
		{"cache dir not writable", []string{"--cache-dir", roDir + "/sub", "run", "--repo", repo.Dir, "--good", "c0", "--bad", "main", "--exec", "true"}, "--cache-dir", 0},
		{"bad terms", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--term-old", "x"), "--term-new", 0},
		{"fix and terms", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--fix", "--term-old", "a", "--term-new", "b"), "--fix", 0},
		{"unknown skip", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--skip", "zzz"), "--skip", 0},
		{"unknown flag", append(base_, "--frobnicate"), "unknown flag", 0},
		{"stray args", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "extra"), "unexpected arguments", 0},
		{"unknown run", []string{"resume", "no-such-run"}, "no run", 0},
		{"unknown format", []string{"report", "--format", "pdf"}, "", 0},
		{"negative repeat", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--repeat", "-1"), "--repeat", 0},
		{"bad endpoint check", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--endpoint-check", "sometimes"), "--endpoint-check", 0},
		{"bad duration", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--timeout", "soon"), "invalid argument", 0},
		{"missing guest test", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notRepo+"/nope.sh"), "--guest-test", 0},
		{"exec and guest test", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--guest-test", notLog), "not both", 0},
		{"missing fragment", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--kconfig", notRepo+"/frag"), "--kconfig", 0},
		{"malformed fragment", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--kconfig", notLog), "notalog:1", 0},
		{"not a kernel tree", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog), "not a Linux kernel tree", 0},
		{"kernel not an image", []string{"boot", "--kernel", notLog, "--guest-test", notLog}, "not a bzImage", 0},
		{"corrupt journal", []string{"status", "corrupt"}, "damaged", 3},
		{"empty state dir", append([]string{"--state-dir", ""}, append(base_, "--good", "c0", "--bad", "main", "--exec", "true")...), "--state-dir is empty", 0},
		{"empty cache dir", append([]string{"--cache-dir", ""}, append(base_, "--good", "c0", "--bad", "main", "--exec", "true")...), "--cache-dir is empty", 0},
		{"path no commit touches", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--", "no/such/path"), "No testable commit", 0},
		{"swapped terms", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--term-old", "bad", "--term-new", "good"), "--term-old", 0},
		{"new old terms", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--term-old", "new", "--term-new", "old"), "--term-old", 0},
		{"command terms", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--term-old", "reset", "--term-new", "run"), "git bisect uses that word", 0},
		{"log help terms", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--term-old", "log", "--term-new", "help"), "git bisect uses that word", 0},
		{"term not a ref name", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--term-old", "a..b", "--term-new", "c"), "not a valid term", 0},
		{"negative timeout", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--timeout", "-5s"), "--timeout", 0},
		{"zero repeat", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--repeat", "0"), "--repeat", 0},
		{"huge repeat", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--repeat", "2000000000"), "--repeat", 0},
		{"kconfig with exec", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--kconfig", "/nonexistent"), "--kconfig only apply to kernel runs", 0},
		{"target with exec", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--target", "bogus://x"), "--target only apply", 0},
		{"memory and cpus with exec", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--memory", "1", "--cpus", "0"), "--cpus, --memory only apply", 0},
		{"unknown rootfs", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--rootfs", "nixos"), "--rootfs \"nixos\": give busybox, host, image:FILE or debian:RELEASE", 0},
		{"missing image", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--rootfs", "image:disk.qcow2"), "--rootfs image:disk.qcow2: stat", 0},
		{"bad debian package", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--rootfs", "debian:bookworm+a;b"), `"a;b" is not a Debian package name`, 0},
		{"virtiofs without a shared root", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--rootfs-share", "virtiofs"), "it does not go with --rootfs busybox", 0},
		{"unknown share", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--rootfs", "host", "--rootfs-share", "nfs"), "--rootfs-share must be 9p or virtiofs", 0},
		{"init system on the host's root", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--rootfs", "host", "--init", "system"), "--init system boots the init of --rootfs image:FILE or debian:RELEASE", 0},
		{"unknown init", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--init", "openrc"), "--init must be agent or system", 0},
		{"unknown machine", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--machine", "pc"), "--machine must be one of q35, microvm", 0},
		{"microvm on a real machine", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--machine", "microvm", "--target", "machine://box"), "--machine microvm is QEMU's machine type", 0},
		{"guest kernel without a machine", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--guest-kernel", notLog), "are for --target machine://HOST", 0},
		{"host rootfs remote", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--rootfs", "host", "--target", "ssh://vmhost"), "--rootfs host", 0},
		{"unknown cluster", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--cluster", "icecc:sched"), "give distcc or distcc:HOSTS", 0},
		{"cluster without ccache", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--cluster", "distcc:node1/8", "--no-ccache"), "work through ccache", 0},
		{"credentials in ccache remote", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--ccache-remote", "redis://me:s3cret@cache"), "not in the URL", 0},
		{"ccache remote not a backend", append(base_, "--good", "c0", "--bad", "main", "--guest-test", notLog, "--ccache-remote", "ftp://cache"), "give redis://HOST", 0},
		{"cluster with exec", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--cluster", "distcc:node1"), "--cluster only apply", 0},
		{"symmetric skip range", append(base_, "--good", "c0", "--bad", "main", "--exec", "true", "--skip", "c1...main"), "symmetric", 0},
	}
	os.MkdirAll(filepath.Join(e.state, "runs", "corrupt"), 0o755)
	os.WriteFile(filepath.Join(e.state, "runs", "corrupt", "journal.db"), []byte("not a database at all, just some text"), 0o644)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := e.run(c.args...)
			want := 2
			if c.args[0] == "boot" {
				want = 128 // git bisect run's "input error" for test/boot
			}
			if c.code != 0 {
				want = c.code
			}
			if res.code != want {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", res.code, want, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stderr, c.want) {
				t.Errorf("stderr %q does not mention %q", res.stderr, c.want)
			}
		})
	}
	// A branch named --help is a ref, not an option.
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", "--help", "--exec", "grep -qx 0 f && exit 0; exit 1")
	if res.code != 0 || r.Outcome != "found" {
		t.Errorf("--bad --help: exit %d %s", res.code, res.stderr)
	}
	if diff := cmp.Diff(before, snapshot(t, repo.Dir)); diff != "" {
		t.Fatalf("the user's repository changed:\n%s", diff)
	}
}

func TestExitCodesAndSemantics(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 40)
	repo := b.Write(t)
	bad := repo.SHAs[tip]

	t.Run("skip and ambiguous", func(t *testing.T) {
		e := newEnv(t)
		// Commits 20..24 cannot be tested; the culprit is 22.
		script := `n=$(cat f); [ $n -ge 20 ] && [ $n -le 24 ] && exit 125; [ $n -ge 22 ] && exit 1; exit 0`
		r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", script)
		if res.code != 1 || r.Outcome != "ambiguous" {
			t.Fatalf("exit %d outcome %s", res.code, r.Outcome)
		}
		var want []string
		for n := 20; n <= 25; n++ {
			want = append(want, repo.SHAs[n])
		}
		got := append([]string(nil), r.Candidates...)
		sort.Strings(got)
		sort.Strings(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ambiguous set (-want +got):\n%s", diff)
		}
		gitRes := gittest.BisectRun(t, repo.Dir, []string{bad, repo.SHAs[0]}, script)
		if diff := cmp.Diff(gitRes.Tested, tested(r)); diff != "" {
			t.Errorf("tested commits differ from git bisect run:\n%s", diff)
		}
	})
	t.Run("abort on 128+", func(t *testing.T) {
		e := newEnv(t)
		r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", "exit 130")
		if res.code != 1 || r.Outcome != "aborted" || !strings.Contains(r.Message, "130") {
			t.Fatalf("exit %d outcome %s message %q", res.code, r.Outcome, r.Message)
		}
	})
	t.Run("command not found", func(t *testing.T) {
		e := newEnv(t)
		r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", "./no-such-script")
		if res.code != 1 || r.Outcome != "aborted" || !strings.Contains(r.Message, "not found") {
			t.Fatalf("exit %d outcome %s message %q", res.code, r.Outcome, r.Message)
		}
	})
	t.Run("127 on bad only is bad", func(t *testing.T) {
		e := newEnv(t)
		r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", `[ $(cat f) -ge 7 ] && exit 127; exit 0`)
		if res.code != 0 || *r.Culprit != repo.SHAs[7] {
			t.Fatalf("exit %d culprit %v: %s", res.code, r.Culprit, res.stderr)
		}
	})
	t.Run("timeout is bad and kills the group", func(t *testing.T) {
		e := newEnv(t)
		marker := filepath.Join(t.TempDir(), "pids")
		script := fmt.Sprintf(`[ $(cat f) -ge 30 ] && { sleep 300 & echo $! >> %s; wait; }; exit 0`, marker)
		r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", script, "--timeout", "300ms")
		if res.code != 0 || *r.Culprit != repo.SHAs[30] {
			t.Fatalf("exit %d culprit %v: %s", res.code, r.Culprit, res.stderr)
		}
		sawTimeout := false
		for _, s := range r.Steps {
			sawTimeout = sawTimeout || s.Reason == "timeout"
		}
		if !sawTimeout {
			t.Error("no step has reason timeout")
		}
		data, _ := os.ReadFile(marker)
		for _, pid := range strings.Fields(string(data)) {
			if alive(pid) {
				t.Errorf("background process %s of a timed-out test is still alive", pid)
			}
		}
	})
	t.Run("repeat and flaky", func(t *testing.T) {
		e := newEnv(t)
		// Bad from 25 on, but only on the second run of a step.
		script := `[ $(cat f) -ge 25 ] && [ $FIRSTBAD_RUN = 2 ] && exit 1; exit 0`
		r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", script, "--repeat", "3")
		if res.code != 0 || *r.Culprit != repo.SHAs[25] {
			t.Fatalf("exit %d culprit %v: %s", res.code, r.Culprit, res.stderr)
		}
		for _, s := range r.Steps {
			if len(s.Runs) != 3 {
				t.Errorf("step %s has %d runs, want 3", s.Commit[:8], len(s.Runs))
			}
		}
		if !strings.Contains(res.stderr, "flaky") {
			t.Errorf("no flaky warning in stderr:\n%s", res.stderr)
		}
	})
	t.Run("terms and fix", func(t *testing.T) {
		e := newEnv(t)
		// Fixed from 12 on: exit 0 means it works.
		r, res := e.runJSON("run", "--repo", repo.Dir, "--fix", "--bad", "c0", "--good", bad, "--exec", `[ $(cat f) -ge 12 ]`)
		if res.code != 0 || *r.Culprit != repo.SHAs[12] || r.Terms["new"] != "fixed" {
			t.Fatalf("exit %d culprit %v terms %v: %s", res.code, r.Culprit, r.Terms, res.stderr)
		}
		r, res = e.runJSON("run", "--repo", repo.Dir, "--term-old", "slow", "--term-new", "fast", "--good", "c0", "--bad", bad,
			"--exec", `[ $(cat f) -lt 33 ]`)
		if res.code != 0 || *r.Culprit != repo.SHAs[33] {
			t.Fatalf("exit %d culprit %v: %s", res.code, r.Culprit, res.stderr)
		}
		log := e.run("log", r.RunID)
		if !strings.Contains(log.stdout, "'--term-old=slow' '--term-new=fast'") || !strings.Contains(log.stdout, "git bisect fast ") {
			t.Errorf("log does not use the terms:\n%s", log.stdout)
		}
	})
}

func TestLogReplaysInGit(t *testing.T) {
	var b gittest.Builder
	root := b.Linear(-1, 3)
	tip := b.MergeHeavy(root, 200, 5)
	repo := b.Write(t)
	e := newEnv(t)
	culprit := repo.SHAs[120]
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec",
		fmt.Sprintf("git merge-base --is-ancestor %s HEAD && exit 1; exit 0", culprit))
	if res.code != 0 {
		t.Fatal(res.stderr)
	}
	log := e.run("log", r.RunID)
	logf := filepath.Join(t.TempDir(), "bisect.log")
	os.WriteFile(logf, []byte(log.stdout), 0o644)
	cmd := exec.Command("git", "bisect", "replay", logf)
	cmd.Dir = repo.Dir
	out, err := cmd.CombinedOutput()
	defer gittest.Git(t, repo.Dir, "bisect", "reset")
	if err != nil || !strings.Contains(string(out), culprit+" is the first bad commit") {
		t.Fatalf("git bisect replay: %v\n%s\nlog:\n%s", err, out, log.stdout)
	}
}

func TestFromPartialLog(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 64)
	repo := b.Write(t)
	culprit := repo.SHAs[45]
	script := fmt.Sprintf("git merge-base --is-ancestor %s HEAD && exit 1; exit 0", culprit)
	full := gittest.BisectRun(t, repo.Dir, []string{repo.SHAs[tip], repo.SHAs[0]}, script)
	// A log of the first two steps, as git wrote it.
	gittest.Git(t, repo.Dir, "bisect", "start", repo.SHAs[tip], repo.SHAs[0])
	for _, c := range full.Tested[:2] {
		gittest.Git(t, repo.Dir, "checkout", "-q", c)
		verdict := "good"
		if cmd := exec.Command("sh", "-c", script); true {
			cmd.Dir = repo.Dir
			if cmd.Run() != nil {
				verdict = "bad"
			}
		}
		gittest.Git(t, repo.Dir, "bisect", verdict, c)
	}
	logText := gittest.Git(t, repo.Dir, "bisect", "log")
	gittest.Git(t, repo.Dir, "bisect", "reset")
	logf := filepath.Join(t.TempDir(), "partial.log")
	os.WriteFile(logf, []byte(logText+"\n"), 0o644)

	e := newEnv(t)
	r, res := e.runJSON("run", "--repo", repo.Dir, "--from-log", logf, "--exec", script)
	if res.code != 0 || *r.Culprit != culprit {
		t.Fatalf("exit %d culprit %v: %s", res.code, r.Culprit, res.stderr)
	}
	if diff := cmp.Diff(full.Tested[2:], tested(r)); diff != "" {
		t.Errorf("after the log's two steps, firstbad should test what git would (-git +firstbad):\n%s", diff)
	}
}

func TestResumeAfterKill(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 200)
	repo := b.Write(t)
	culprit := repo.SHAs[77]
	dir := t.TempDir()
	logf := filepath.Join(dir, "seen")
	// On the 4th step the reproducer SIGKILLs firstbad (its parent) once.
	script := fmt.Sprintf(`if [ "$FIRSTBAD_STEP" = 4 ] && [ ! -e %[1]s/killed ]; then touch %[1]s/killed; kill -9 $PPID; sleep 1; fi; %[2]s`,
		dir, culpritScript(culprit, logf))
	e := newEnv(t)
	res := e.run("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", script)
	if res.code != -1 && res.code != 137 {
		t.Fatalf("firstbad was not killed: exit %d\n%s", res.code, res.stderr)
	}
	// Starting it again with the same arguments points at resume.
	again := e.run("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", script)
	if again.code != 2 || !strings.Contains(again.stderr, "firstbad resume") {
		t.Fatalf("re-run with the same arguments: exit %d\n%s", again.code, again.stderr)
	}
	// Its controller is gone: status says so (not "running").
	st, _ := e.runJSON("status")
	if st.Outcome != "interrupted" || len(st.Steps) != 4 {
		t.Fatalf("status after kill: outcome %s, %d steps", st.Outcome, len(st.Steps))
	}
	r, res := e.runJSON("resume")
	if res.code != 0 || *r.Culprit != culprit {
		t.Fatalf("resume: exit %d culprit %v\n%s", res.code, r.Culprit, res.stderr)
	}
	// Steps 1-3 ran once each; step 4 was cut short and ran again.
	data, _ := os.ReadFile(logf)
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(line); f[1] != "0" { // step 0: the checks after the search
			seen[f[0]]++
		}
	}
	for i, s := range r.Steps {
		if s.Verdict == "error" {
			continue
		}
		if seen[s.Commit] != 1 {
			t.Errorf("step %d (%s) ran %d times", i+1, s.Commit[:8], seen[s.Commit])
		}
	}
	want := gittest.BisectRun(t, repo.Dir, []string{repo.SHAs[tip], repo.SHAs[0]},
		fmt.Sprintf("git merge-base --is-ancestor %s HEAD && exit 1; exit 0", culprit))
	var done []string
	for _, s := range r.Steps {
		if s.Verdict != "error" {
			done = append(done, s.Commit)
		}
	}
	if diff := cmp.Diff(want.Tested, done); diff != "" {
		t.Errorf("resumed run tested other commits than git bisect (-git +firstbad):\n%s", diff)
	}
	// Resuming a finished run prints its result.
	if res := e.run("resume", r.RunID); res.code != 0 || !strings.Contains(res.stdout, culprit) {
		t.Errorf("resume of a finished run: exit %d\n%s", res.code, res.stdout)
	}
}

func TestUntrustedSubjects(t *testing.T) {
	var b gittest.Builder
	prev := b.Commit()
	prev = b.CommitFiles("evil $(touch PWNED) <script>alert(1)</script> \x1b[31mred\x1b[0m | pipe", map[string]string{"f": "bad"}, prev)
	prev = b.CommitFiles("non-utf8 \xff\xfe subject", map[string]string{"f": "bad2"}, prev)
	repo := b.Write(t)
	e := newEnv(t)
	work := t.TempDir()
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[prev], "--exec", `grep -q bad f && exit 1; exit 0`)
	if res.code != 0 || *r.Culprit != repo.SHAs[1] {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	html := e.run("report", "--format", "html")
	if strings.Contains(html.stdout, "<script>") || !strings.Contains(html.stdout, "&lt;script&gt;") {
		t.Error("HTML report does not escape the subject")
	}
	md := e.run("report")
	if strings.Contains(md.stdout, "\x1b") {
		t.Error("Markdown report passes escape sequences through")
	}
	if _, err := os.Stat(filepath.Join(work, "PWNED")); err == nil {
		t.Error("a subject was run through a shell")
	}
	for _, d := range []string{repo.Dir, e.state, e.cache} {
		filepath.WalkDir(d, func(p string, _ fs.DirEntry, _ error) error {
			if filepath.Base(p) == "PWNED" {
				t.Errorf("a subject was run through a shell: %s", p)
			}
			return nil
		})
	}
}

// alive reports whether a process still runs (zombies awaiting their reaper
// do not count), giving a just-killed one a moment to die.
func alive(pid string) bool {
	for range 50 {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return false
		}
		// The state follows the command name's closing parenthesis.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func TestEndpointChecksAndConfirmation(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 50)
	repo := b.Write(t)
	bad := repo.SHAs[tip]
	e := newEnv(t)

	// Lazy: every step came back bad, so the good endpoint is tested, and
	// it is bad too: the bug is older than the good ref.
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", "exit 1")
	if res.code != 1 || r.Outcome != "endpoint-mismatch" || !strings.Contains(r.Message, "good commit") || len(r.Endpoints) != 1 {
		t.Fatalf("lazy: exit %d outcome %s message %q endpoints %d", res.code, r.Outcome, r.Message, len(r.Endpoints))
	}
	// Upfront: both endpoints before any step; a test that is always good
	// fails on the bad endpoint at once.
	r, res = e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", "exit 0", "--endpoint-check", "upfront")
	if res.code != 1 || r.Outcome != "endpoint-mismatch" || len(r.Steps) != 0 || !strings.Contains(r.Message, "bad commit") {
		t.Fatalf("upfront: exit %d outcome %s steps %d message %q", res.code, r.Outcome, len(r.Steps), r.Message)
	}
	// Lazy costs nothing when both sides were seen.
	r, res = e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", "[ $(cat f) -lt 20 ]", "--confirm")
	if res.code != 0 || len(r.Endpoints) != 0 || *r.Culprit != repo.SHAs[20] {
		t.Fatalf("exit %d endpoints %d culprit %v", res.code, len(r.Endpoints), r.Culprit)
	}
	var c struct {
		Culprit   struct{ Commit, Verdict string }
		Parent    struct{ Commit, Verdict string }
		Confirmed bool
	}
	data, _ := json.Marshal(r.Confirm)
	if err := json.Unmarshal(data, &c); err != nil || !c.Confirmed || c.Culprit.Commit != repo.SHAs[20] || c.Parent.Commit != repo.SHAs[19] {
		t.Fatalf("confirmation %s (%v)", data, err)
	}
}

func TestConfigFile(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 30)
	repo := b.Write(t)
	e := newEnv(t)
	cfg := filepath.Join(t.TempDir(), "firstbad.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("repo = %q\ngood = [\"c0\"]\nbad = %q\nexec = \"[ $(cat f) -lt 12 ]\"\n", repo.Dir, repo.SHAs[tip])), 0o644)
	r, res := e.runJSON("run", "--config", cfg)
	if res.code != 0 || *r.Culprit != repo.SHAs[12] {
		t.Fatalf("exit %d culprit %v\n%s", res.code, r.Culprit, res.stderr)
	}
	// Flags override the file.
	r, res = e.runJSON("run", "--config", cfg, "--exec", "[ $(cat f) -lt 7 ]")
	if res.code != 0 || *r.Culprit != repo.SHAs[7] {
		t.Fatalf("override: exit %d culprit %v\n%s", res.code, r.Culprit, res.stderr)
	}
	os.WriteFile(cfg, []byte("good = [\"c0\"]\n\nbda = \"main\"\n"), 0o644)
	res = e.run("run", "--config", cfg)
	if res.code != 2 || !strings.Contains(res.stderr, `:3: unknown key "bda"`) {
		t.Fatalf("unknown key: exit %d: %s", res.code, res.stderr)
	}
}

func TestSkipRangeFlag(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 40)
	repo := b.Write(t)
	e := newEnv(t)
	// c10..c14 (c11-c14) untestable by the user's word; the culprit is c12,
	// so the answer is c11..c15 (c15 the first tested bad), as git says.
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--skip", "c10..c14", "--skip", "c30",
		"--exec", "[ $(cat f) -lt 12 ]")
	if res.code != 1 || r.Outcome != "ambiguous" {
		t.Fatalf("exit %d outcome %s: %s", res.code, r.Outcome, res.stderr)
	}
	got := append([]string(nil), r.Candidates...)
	sort.Strings(got)
	want := []string{repo.SHAs[11], repo.SHAs[12], repo.SHAs[13], repo.SHAs[14], repo.SHAs[15]}
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ambiguous set (-want +got):\n%s", diff)
	}
	for _, s := range r.Steps {
		for _, n := range []int{11, 12, 13, 14, 30} {
			if s.Commit == repo.SHAs[n] {
				t.Errorf("tested c%d, which the user skipped", n)
			}
		}
	}
}

func TestConcurrentRunsShareRepoAndCache(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 80)
	repo := b.Write(t)
	e := newEnv(t)
	type out struct {
		r   report
		res result
	}
	done := make(chan out, 2)
	for _, n := range []int{23, 61} {
		go func(n int) {
			// Slow enough that the two runs overlap.
			r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip],
				"--exec", fmt.Sprintf("sleep 0.05; [ $(cat f) -lt %d ]", n))
			done <- out{r, res}
		}(n)
	}
	found := map[string]bool{}
	for range 2 {
		o := <-done
		if o.res.code != 0 || o.r.Culprit == nil {
			t.Fatalf("a concurrent run failed: exit %d\n%s", o.res.code, o.res.stderr)
		}
		found[*o.r.Culprit] = true
	}
	if !found[repo.SHAs[23]] || !found[repo.SHAs[61]] {
		t.Errorf("culprits %v, want c23 and c61", found)
	}
}

// TestKillAnywhereAndResume SIGKILLs the controller at many points of a run
// (during checkout, during the test, between test end and the journal
// commit, during journal writes: the kill times are spread over the step),
// resuming after each, and checks the result is the uninterrupted one.
func TestKillAnywhereAndResume(t *testing.T) {
	long(t)
	var b gittest.Builder
	tip := b.Linear(-1, 300)
	repo := b.Write(t)
	culprit := repo.SHAs[137]
	dir := t.TempDir()
	logf, pidf := filepath.Join(dir, "runs"), filepath.Join(dir, "pids")
	script := fmt.Sprintf(`echo $$ >> %s; sleep 0.08; echo "$FIRSTBAD_COMMIT $FIRSTBAD_STEP" >> %s; [ $(cat f) -lt 137 ]`, pidf, logf)
	e := newEnv(t)
	args := []string{"--state-dir", e.state, "--cache-dir", e.cache, "run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", script}
	kills := 0
	for i := 0; kills < 24 && i < 200; i++ {
		// Killed before its journal existed, a run is started again;
		// otherwise it is resumed.
		cmd := exec.Command(binary, args...)
		if list := e.run("list"); strings.Count(list.stdout, "\n") > 1 {
			cmd = exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "resume")
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(30+(i*53)%250) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			// Finished before the kill: the run is over.
			i = 1000
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
	// Finish it if the last kill left it unfinished (or left no run: a
	// run killed before its journal existed starts again); then read the
	// result.
	if list := e.run("list"); strings.Count(list.stdout, "\n") < 2 {
		if res := e.run(args...); res.code != 0 {
			t.Fatalf("final run: exit %d\n%s", res.code, res.stderr)
		}
	}
	if st, _ := e.runJSON("status"); st.Outcome != "found" {
		if res := e.run("resume"); res.code != 0 {
			t.Fatalf("final resume: exit %d\n%s", res.code, res.stderr)
		}
	}
	r, res := e.runJSON("status")
	if res.code != 0 || r.Culprit == nil || *r.Culprit != culprit {
		t.Fatalf("after %d kills: exit %d culprit %v\n%s", kills, res.code, r.Culprit, res.stderr)
	}
	want := gittest.BisectRun(t, repo.Dir, []string{repo.SHAs[tip], repo.SHAs[0]},
		fmt.Sprintf("git merge-base --is-ancestor %s HEAD && exit 1; exit 0", culprit))
	var done []string
	interrupted := map[string]int{}
	for _, s := range r.Steps {
		if s.Verdict == "error" {
			interrupted[s.Commit]++
			continue
		}
		done = append(done, s.Commit)
	}
	if diff := cmp.Diff(want.Tested, done); diff != "" {
		t.Errorf("after %d kills the finished steps differ from git bisect (-git +firstbad):\n%s", kills, diff)
	}
	// A finished step never runs again: a commit's completed runs are its
	// finished step plus at most one per interruption of it.
	data, _ := os.ReadFile(logf)
	ran := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] != "0" { // step 0: the checks after the search
			ran[f[0]]++
		}
	}
	for _, c := range done {
		if ran[c] > 1+interrupted[c] {
			t.Errorf("commit %s ran %d times with %d interruptions", c[:8], ran[c], interrupted[c])
		}
	}
	// No reproducer of a killed controller is left running.
	pids, _ := os.ReadFile(pidf)
	for _, pid := range strings.Fields(string(pids)) {
		if alive(pid) {
			t.Errorf("reproducer %s outlived its controller", pid)
		}
	}
	t.Logf("%d kills, %d steps, %d interrupted", kills, len(done), len(r.Steps)-len(done))
}

func TestGC(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 20)
	repo := b.Write(t)
	e := newEnv(t)
	finished, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", "[ $(cat f) -lt 5 ]")
	if res.code != 0 {
		t.Fatal(res.stderr)
	}
	// An unfinished run (killed after its first step) must survive gc.
	other := e.run("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec",
		`[ "$FIRSTBAD_STEP" = 2 ] && kill -9 $PPID; [ $(cat f) -lt 9 ]`)
	if other.code == 0 {
		t.Fatal("the run was not killed")
	}
	// Nothing is old yet: nothing goes.
	if res := e.run("gc"); res.code != 0 || !strings.Contains(res.stdout, "freed 0.0 MiB in 0 items") {
		t.Fatalf("gc of fresh state: exit %d %s %s", res.code, res.stdout, res.stderr)
	}
	// Build dirs of the clone's checkouts go, in the checkout or (from
	// older firstbad) beside it; the checkout stays.
	clones, _ := filepath.Glob(filepath.Join(e.cache, "repos", "*", "wt", "0"))
	if len(clones) != 1 {
		t.Fatalf("checkouts %v, want one", clones)
	}
	builds := []string{filepath.Join(clones[0], ".firstbad-build-k"), filepath.Join(clones[0], "..", "..", "builds", "0-k")}
	for _, d := range builds {
		if err := os.MkdirAll(filepath.Join(d, "kernel"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// An extra checkout slot (a second run at once made it) unused since
	// the cutoff goes, with its build dir; one in use stays.
	for _, slot := range []string{"1", "2"} {
		d := filepath.Join(filepath.Dir(clones[0]), slot)
		os.MkdirAll(filepath.Join(d, cachedir.BuildDirPrefix+"k", "kernel"), 0o755)
		os.WriteFile(filepath.Join(d, "f"), []byte("1\n"), 0o644)
		os.WriteFile(d+".lock", nil, 0o644)
	}
	busySlot, err := lock.TryAcquire(filepath.Join(filepath.Dir(clones[0]), "2.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer busySlot.Release()
	// Debian roots: an idle one goes, with what a killed or failed
	// mmdebstrap left (ROOT.tmp, the lock of a root never made); one held
	// by a firstbad stays.
	roots := filepath.Join(e.cache, "roots")
	for _, d := range []string{"idle-1/usr", "killed-2.tmp/usr", "busy-3/usr"} {
		os.MkdirAll(filepath.Join(roots, d), 0o755)
	}
	for _, l := range []string{"idle-1.lock", "failed-4.lock", "busy-3.lock"} {
		os.WriteFile(filepath.Join(roots, l), nil, 0o644)
	}
	held, err := lock.TryAcquire(filepath.Join(roots, "busy-3.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	res = e.run("gc", "--older-than", "0s")
	if names, _ := filepath.Glob(filepath.Join(roots, "*")); !cmp.Equal(names, []string{filepath.Join(roots, "busy-3"), filepath.Join(roots, "busy-3.lock"), filepath.Join(roots, "idle-1.lock")}) {
		t.Errorf("roots after gc: %v, want the busy root and its lock, and the idle root's lock", names)
	}
	if res.code != 0 || strings.Contains(res.stdout, "in 0 items") {
		t.Fatalf("gc --older-than 0s: exit %d %s %s", res.code, res.stdout, res.stderr)
	}
	for _, d := range builds {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("build dir %s is still there: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(clones[0], "f")); err != nil {
		t.Errorf("the checkout lost its files: %v", err)
	}
	slots, _ := filepath.Glob(filepath.Join(filepath.Dir(clones[0]), "[0-9]"))
	if want := []string{clones[0], filepath.Join(filepath.Dir(clones[0]), "2")}; !cmp.Equal(slots, want) {
		t.Errorf("checkout slots after gc: %v, want %v (the first, and the one in use)", slots, want)
	}
	if _, err := os.Stat(filepath.Join(e.state, "runs", finished.RunID)); !os.IsNotExist(err) {
		t.Errorf("the finished run is still there: %v", err)
	}
	if st, _ := e.runJSON("status"); st.Outcome != "interrupted" {
		t.Errorf("the unfinished run was removed or changed: %s", st.Outcome)
	}
}

// Ctrl-C, and SIGQUIT alike (it used to dump a stack, exit 2 and leave
// the reproducer running): the reproducer dies, the step is recorded as
// interrupted, the resume command is printed, and resume finishes.
func TestSignalRecordsInterruptedAndResumes(t *testing.T) {
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) { signalAndResume(t, sig) })
	}
}

func signalAndResume(t *testing.T, sig os.Signal) {
	var b gittest.Builder
	tip := b.Linear(-1, 40)
	repo := b.Write(t)
	e := newEnv(t)
	dir := t.TempDir()
	script := fmt.Sprintf(`echo $$ > %[1]s/pid; [ -e %[1]s/fast ] || { sleep 30 & wait; }; [ $(cat f) -lt 17 ]`, dir)
	cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "run", "--repo", repo.Dir, "--good", "c0",
		"--bad", repo.SHAs[tip], "--exec", script)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(dir, "pid"))
	cmd.Process.Signal(sig)
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "firstbad resume") || strings.Contains(stderr.String(), "goroutine") {
		t.Fatalf("%v: %v\n%s", sig, err, stderr.String())
	}
	pid, _ := os.ReadFile(filepath.Join(dir, "pid"))
	if alive(strings.TrimSpace(string(pid))) {
		t.Errorf("the reproducer survived %v", sig)
	}
	st, _ := e.runJSON("status")
	if st.Outcome != "interrupted" || len(st.Steps) != 1 || st.Steps[0].Verdict != "error" {
		t.Fatalf("after %v: outcome %s steps %+v", sig, st.Outcome, st.Steps)
	}
	os.WriteFile(filepath.Join(dir, "fast"), nil, 0o644)
	r, res := e.runJSON("resume")
	if res.code != 0 || r.Culprit == nil || *r.Culprit != repo.SHAs[17] {
		t.Fatalf("resume after %v: exit %d culprit %v\n%s", sig, res.code, r.Culprit, res.stderr)
	}
}

// A reproducer that ignores SIGTERM holds up the first Ctrl-C for the
// grace period; a second Ctrl-C exits at once and still kills it.
func TestSecondCtrlCKillsChildren(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 10)
	repo := b.Write(t)
	e := newEnv(t)
	dir := t.TempDir()
	script := fmt.Sprintf(`trap '' TERM; sleep 60 & echo $! > %[1]s/pid; wait`, dir)
	cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "run", "--repo", repo.Dir, "--good", "c0",
		"--bad", repo.SHAs[tip], "--exec", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ { // until the reproducer runs
		if data, _ := os.ReadFile(filepath.Join(dir, "pid")); len(data) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || time.Since(start) > 2*time.Second {
		t.Fatalf("second Ctrl-C: %v after %s", err, time.Since(start))
	}
	pid, _ := os.ReadFile(filepath.Join(dir, "pid"))
	if alive(strings.TrimSpace(string(pid))) {
		t.Error("the reproducer survived the second Ctrl-C")
	}
}

// flakyScript fails on commits from culprit on (file f holds the commit's
// number) with probability pct/100, drawn from a hash of the commit, step
// and run: reproducible, and independent from run to run.
func flakyScript(culprit, pct int) string {
	return fmt.Sprintf(`[ "$(cat f)" -lt %d ] && exit 0
h=$(printf '%%s-%%s-%%s' "$FIRSTBAD_COMMIT" "$FIRSTBAD_STEP" "$FIRSTBAD_RUN" | cksum | cut -d' ' -f1)
[ $((h %% 100)) -lt %d ] && exit 1
exit 0`, culprit, pct)
}

func TestFlakyBayes(t *testing.T) {
	long(t)
	var b gittest.Builder
	tip := b.Linear(-1, 300)
	repo := b.Write(t)
	bad := repo.SHAs[tip]
	e := newEnv(t)
	type bayesReport struct {
		Strategy   string   `json:"strategy"`
		Confidence *float64 `json:"confidence"`
		Posterior  []struct {
			Commit string  `json:"commit"`
			P      float64 `json:"p"`
		} `json:"posterior"`
		FailProb *float64 `json:"fail_probability"`
	}

	// A test that fails 35% of the time on bad commits: the answer is
	// right and says how sure it is.
	for _, culprit := range []int{173, 41} {
		r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--flaky", "--exec", flakyScript(culprit, 35))
		var br bayesReport
		if err := json.Unmarshal([]byte(res.stdout), &br); err != nil {
			t.Fatal(err)
		}
		if res.code != 0 || r.Outcome != "found" || *r.Culprit != repo.SHAs[culprit] {
			t.Fatalf("culprit c%d: exit %d outcome %s culprit %v\n%s", culprit, res.code, r.Outcome, r.Culprit, res.stderr)
		}
		if br.Strategy != "bayes" || br.Confidence == nil || *br.Confidence < 0.99 || len(br.Posterior) == 0 ||
			br.Posterior[0].Commit != repo.SHAs[culprit] || br.Posterior[0].P != *br.Confidence || br.FailProb == nil {
			t.Fatalf("culprit c%d: %s", culprit, res.stdout)
		}
		// Each step keeps all its runs; some commit was run more than once.
		runs := map[string]int{}
		for _, s := range r.Steps {
			if len(s.Runs) == 0 {
				t.Fatalf("step without runs: %+v", s)
			}
			runs[s.Commit] += len(s.Runs)
		}
		if runs[repo.SHAs[culprit-1]] < 3 {
			t.Errorf("culprit c%d: the commit before the culprit ran %d times; a flaky pass needs repeating", culprit, runs[repo.SHAs[culprit-1]])
		}
		// The human report says it too.
		md := e.run("report", r.RunID)
		if !strings.Contains(md.stdout, "Confidence: 0.99") || !strings.Contains(md.stdout, "Most likely first bad commits") {
			t.Errorf("markdown report lacks the posterior:\n%s", md.stdout)
		}
	}

	// A run budget stops the search short, with the likely candidates.
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--flaky", "--max-runs", "6", "--exec", flakyScript(100, 35))
	if res.code != 1 || r.Outcome != "budget-exhausted" || len(r.Candidates) == 0 || !strings.Contains(r.Message, "--max-runs") {
		t.Errorf("budget: exit %d outcome %s candidates %d message %q", res.code, r.Outcome, len(r.Candidates), r.Message)
	}
	// Endpoints are observations: a test that always fails ends up testing
	// the good commit, which fails: the change is older than the range.
	r, res = e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--flaky", "--exec", "exit 1")
	if res.code != 1 || r.Outcome != "endpoint-mismatch" || !strings.Contains(r.Message, "older than your good ref") {
		t.Errorf("always bad: exit %d outcome %s message %q", res.code, r.Outcome, r.Message)
	}
	// Options that make no sense together are refused.
	for _, args := range [][]string{
		{"--flaky", "--repeat", "3"},
		{"--strategy", "bayes", "--confidence", "1.5"},
		{"--false-alarm-rate", "0.01"},
		{"--strategy", "magic"},
		{"--flaky", "--false-alarm-rate", "0.7"},
	} {
		res := e.run(append([]string{"run", "--repo", repo.Dir, "--good", "c0", "--bad", bad, "--exec", "true"}, args...)...)
		if res.code != 2 || res.stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, res.code, res.stderr)
		}
	}
}
