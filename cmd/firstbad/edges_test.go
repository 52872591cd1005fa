package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/gittest"
)

// waitFile polls until path exists.
// waitFile waits for a file to exist with something in it: a shell's
// "echo $$ > f" makes it empty first, and an empty pid read as "" names
// /proc//stat, which is /proc/stat, always there.
func waitFile(t *testing.T, path string) {
	t.Helper()
	for range 400 {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
}

// A kill -9 while git bisect run's 126/127 check runs on the good commit,
// then resume: the check runs again and the run aborts, exactly as
// without the kill (it used to name a culprit).
func TestKillDuringCommandCheck(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 8)
	repo := b.Write(t)
	e := newEnv(t)
	dir := t.TempDir()
	// The check is the only step numbered 0.
	script := fmt.Sprintf(`[ "$FIRSTBAD_STEP" = 0 ] && echo > %s/check; sleep 1; exit 127`, dir)
	cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "run", "--repo", repo.Dir, "--good", "c0",
		"--bad", repo.SHAs[tip], "--endpoint-check", "off", "--exec", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(dir, "check"))
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	r, res := e.runJSON("resume")
	if res.code != 1 || r.Outcome != "aborted" || r.Culprit != nil || !strings.Contains(r.Message, "not found or not executable") {
		t.Fatalf("resume after a kill during the check: exit %d outcome %s culprit %v: %s\n%s", res.code, r.Outcome, r.Culprit, r.Message, res.stderr)
	}
}

// An endpoint that exits 128 or more aborts the run (exit 1), as a search
// step does; it used to end "interrupted" with exit 3.
func TestEndpointAbortIsAborted(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 8)
	repo := b.Write(t)
	e := newEnv(t)
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--endpoint-check", "upfront", "--exec", "exit 200")
	if res.code != 1 || r.Outcome != "aborted" {
		t.Fatalf("exit %d outcome %s\n%s", res.code, r.Outcome, res.stderr)
	}
}

// --json promises exactly one JSON object on stdout, errors included.
func TestJSONOnError(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 4)
	repo := b.Write(t)
	e := newEnv(t)
	for _, args := range [][]string{
		{"run", "--repo", repo.Dir, "--good", "nosuchref", "--bad", repo.SHAs[tip], "--exec", "true"},
		{"status", "no-such-run"},
		{"run", "--frobnicate"},
	} {
		res := e.run(append([]string{"--json"}, args...)...)
		var obj struct {
			Outcome  string `json:"outcome"`
			Error    string `json:"error"`
			ExitCode int    `json:"exit_code"`
		}
		dec := json.NewDecoder(strings.NewReader(res.stdout))
		if err := dec.Decode(&obj); err != nil || dec.More() {
			t.Fatalf("%v: stdout is not one JSON object (%v): %q", args, err, res.stdout)
		}
		if obj.Outcome != "error" || obj.Error == "" || obj.ExitCode != res.code || res.code != 2 {
			t.Errorf("%v: exit %d, object %+v", args, res.code, obj)
		}
	}
}

// report -o FILE with a bad format (or run) leaves FILE as it was.
func TestReportOutputNotTruncated(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 6)
	repo := b.Write(t)
	e := newEnv(t)
	if res := e.run("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", "[ $(cat f) -lt 3 ]"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	keep := filepath.Join(t.TempDir(), "keep.html")
	os.WriteFile(keep, []byte("precious"), 0o644)
	for _, args := range [][]string{{"report", "--format", "xml", "-o", keep}, {"report", "no-such-run", "-o", keep}} {
		if res := e.run(args...); res.code != 2 {
			t.Errorf("%v: exit %d", args, res.code)
		}
		if data, _ := os.ReadFile(keep); string(data) != "precious" {
			t.Fatalf("%v truncated the file: %q", args, data)
		}
	}
	if res := e.run("report", "--format", "html", "-o", keep); res.code != 0 {
		t.Fatal(res.stderr)
	}
	if data, _ := os.ReadFile(keep); !strings.Contains(string(data), "<html") {
		t.Fatal("report -o did not write the report")
	}
}

// Two identical runs started at the same instant: one runs, the other is
// refused with the resume hint (both ran before the check took a lock).
func TestIdenticalRunsRace(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 30)
	repo := b.Write(t)
	e := newEnv(t)
	args := []string{"run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", "sleep 0.2; [ $(cat f) -lt 11 ]"}
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run(args...)
		}()
	}
	wg.Wait()
	codes := []int{results[0].code, results[1].code}
	ok, refused := 0, 0
	for _, r := range results {
		switch {
		case r.code == 0:
			ok++
		case r.code == 2 && strings.Contains(r.stderr, "firstbad resume"):
			refused++
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("exit codes %v, want one run and one refusal\n%s\n%s", codes, results[0].stderr, results[1].stderr)
	}
}

// mountTmpfs mounts a small tmpfs at a new dir (root only), unmounted at
// the end of the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// The disk filling during a step: exit 3 naming the full disk and the
// resume command (it said only "database or disk is full (13)"), the run
// recorded as stopped by a full disk (it stayed "running"), and resume
// finishing once there is room again. A reserve kept beside the journal
// is what lets the journal record all that on a full disk.
func TestDiskFullDuringStep(t *testing.T) {
	state := mountTmpfs(t, "4m")
	var b gittest.Builder
	tip := b.Linear(-1, 16)
	repo := b.Write(t)
	e := &env{t: t, state: state, cache: t.TempDir()}
	fill := filepath.Join(state, "fill")
	// On step 2 the reproducer fills the disk (once), then answers.
	script := fmt.Sprintf(`[ "$FIRSTBAD_STEP" = 2 ] && [ ! -e %[1]s.done ] && { touch %[1]s.done; dd if=/dev/zero of=%[1]s bs=64k 2>/dev/null; }; [ $(cat f) -lt 5 ]`, fill)
	res := e.run("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", script)
	if res.code != 3 || !strings.Contains(res.stderr, "disk full") || !strings.Contains(res.stderr, "firstbad resume") {
		t.Fatalf("disk full: exit %d\n%s", res.code, res.stderr)
	}
	os.Remove(fill)
	st, _ := e.runJSON("status")
	if st.Outcome != "interrupted" || !strings.Contains(st.Message, "disk full") {
		t.Fatalf("status after disk full: %s: %s", st.Outcome, st.Message)
	}
	r, res := e.runJSON("resume")
	if res.code != 0 || r.Culprit == nil || *r.Culprit != repo.SHAs[5] {
		t.Fatalf("resume: exit %d\n%s", res.code, res.stderr)
	}
}

// A read-only state dir: status, report and log still read the journal;
// resume says the state dir cannot be written and never advises deleting
// anything.
func TestReadOnlyStateDir(t *testing.T) {
	state := mountTmpfs(t, "16m")
	var b gittest.Builder
	tip := b.Linear(-1, 8)
	repo := b.Write(t)
	e := &env{t: t, state: state, cache: t.TempDir()}
	if res := e.run("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", "[ $(cat f) -lt 3 ]"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", state).CombinedOutput(); err != nil {
		t.Skipf("cannot remount read-only: %v %s", err, out)
	}
	for _, args := range [][]string{{"status"}, {"log"}, {"report"}, {"list"}} {
		if res := e.run(args...); res.code != 0 || strings.Contains(res.stderr, "remove") {
			t.Errorf("%v on a read-only state dir: exit %d\n%s", args, res.code, res.stderr)
		}
	}
	res := e.run("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", "true", "--new")
	if res.code != 2 || !strings.Contains(res.stderr, "not writable") || strings.Contains(res.stderr, "remove") {
		t.Errorf("run on a read-only state dir: exit %d\n%s", res.code, res.stderr)
	}
}
