package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/gittest"
)

// trust is the part of the JSON report the checks after the search fill.
type trust struct {
	Outcome      string  `json:"outcome"`
	Culprit      *string `json:"culprit"`
	Message      string  `json:"message"`
	Confirmation *struct {
		Confirmed bool `json:"confirmed"`
		Revert    *struct {
			Commit  string  `json:"commit"`
			On      string  `json:"on"`
			Verdict string  `json:"verdict"`
			Result  string  `json:"result"`
			Cost    float64 `json:"cost_s"`
		} `json:"revert"`
	} `json:"confirmation"`
	Flags []struct{ Kind, Text, Next string } `json:"culprit_flags"`
}

func (e *env) trustJSON(args ...string) (trust, result) {
	e.t.Helper()
	res := e.run(append([]string{"--json"}, args...)...)
	var tr trust
	if err := json.Unmarshal([]byte(res.stdout), &tr); err != nil {
		e.t.Fatalf("stdout is not one JSON object (%v):\n%s\nstderr:\n%s", err, res.stdout, res.stderr)
	}
	return tr, res
}

// twoChanges is a history in which c5 puts BUG in file a and c8 in file b
// (and, with conflict, c7 changes c5's line again).
func twoChanges(t *testing.T, conflict bool) *gittest.Repo {
	var b gittest.Builder
	n := b.CommitFiles("c0", map[string]string{"a": "ok\n", "b": "ok\n"})
	for i := 1; i <= 10; i++ {
		files := map[string]string{fmt.Sprintf("f%d", i): "x\n"}
		switch {
		case i == 5:
			files["a"] = "BUG\n"
		case i == 7 && conflict:
			files["a"] = "BUG again\n"
		case i == 8:
			files["b"] = "BUG\n"
		}
		n = b.CommitFiles(fmt.Sprintf("c%d", i), files, n)
	}
	return b.Write(t)
}

// The revert check, each way it can come out, in exec mode.
func TestRevertCheck(t *testing.T) {
	for _, c := range []struct {
		name     string
		conflict bool
		test     string
		extra    []string
		code     int
		outcome  string
		verdict  string // of the revert step; "" none made
		result   string
	}{
		{"the revert fixes it", false, "! grep -q BUG a", nil, 0, "found", "good", "makes it good"},
		{"still bad: a second change", false, "! grep -q BUG a b", nil, 1, "suspect", "bad", "still bad"},
		{"still bad, accepted", false, "! grep -q BUG a b", []string{"--accept-suspect"}, 0, "found", "bad", "still bad"},
		{"the revert conflicts", true, "! grep -q BUG a", nil, 0, "found", "", "conflicts (a)"},
		{"on another tip", false, "! grep -q BUG a", []string{"--revert-on", "c7"}, 0, "found", "good", "makes it good"},
	} {
		t.Run(c.name, func(t *testing.T) {
			repo := twoChanges(t, c.conflict)
			e := newEnv(t)
			before := snapshot(t, repo.Dir)
			tr, res := e.trustJSON(append([]string{"run", "--repo", repo.Dir, "--good", "c0", "--bad", "c10", "--exec", c.test}, c.extra...)...)
			if res.code != c.code || tr.Outcome != c.outcome || tr.Culprit == nil || *tr.Culprit != repo.SHAs[5] {
				t.Fatalf("exit %d outcome %s culprit %v, want %d %s c5\n%s%s", res.code, tr.Outcome, tr.Culprit, c.code, c.outcome, res.stdout, res.stderr)
			}
			rv := tr.Confirmation.Revert
			if rv == nil || rv.Verdict != c.verdict && c.verdict != "" || !strings.Contains(rv.Result, c.result) || (rv.Commit == "") != (c.verdict == "") {
				t.Fatalf("revert check %+v, want verdict %q result %q", rv, c.verdict, c.result)
			}
			// The revert commit lives in firstbad's clone only.
			if diff := cmp.Diff(before, snapshot(t, repo.Dir)); diff != "" {
				t.Errorf("the user's repository changed:\n%s", diff)
			}
			md := e.run("report", "--format", "markdown")
			if !strings.Contains(md.stdout, "## Can I trust it?") || !strings.Contains(md.stdout, c.result) {
				t.Errorf("the Markdown report does not show the revert check:\n%s", md.stdout)
			}
		})
	}
}

// A range that goes bad, good, bad again: P breaks it, G (on one branch)
// repairs it, C (on the other) breaks it another way, and the tip merges
// both. The search's answer is checked and the run names what disagrees.
func TestNonMonotonic(t *testing.T) {
	var b gittest.Builder
	c0 := b.CommitFiles("c0", map[string]string{"a": "ok\n", "b": "ok\n"})
	p := b.CommitFiles("P: break a", map[string]string{"a": "BUG\n"}, c0)
	g := b.CommitFiles("G: repair a", map[string]string{"a": "ok\n"}, p)
	c := b.CommitFiles("C: break b", map[string]string{"b": "BUG\n"}, p)
	d := b.CommitFiles("D", map[string]string{"d": "d\n"}, c)
	b.CommitFiles("tip", nil, d, g)
	repo := b.Write(t)
	e := newEnv(t)
	tr, res := e.trustJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", "main", "--exec", "! grep -q BUG a b")
	if res.code != 1 || tr.Outcome != "non-monotonic" || !strings.Contains(tr.Message, "--good "+repo.SHAs[g][:12]) || !strings.Contains(tr.Message, "--flaky") {
		t.Fatalf("exit %d outcome %s message %q\n%s", res.code, tr.Outcome, tr.Message, res.stderr)
	}
	for _, sha := range []string{repo.SHAs[p], repo.SHAs[g]} {
		if !strings.Contains(tr.Message, sha[:12]) {
			t.Errorf("the message does not name %s: %s", sha[:12], tr.Message)
		}
	}
}

// A flaky test in classic mode: the culprit passes on its second run.
// git bisect run would name it silently; firstbad's confirmation catches
// it and ends suspect, pointing at --flaky.
func TestFlakyClassicIsSuspect(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 40)
	repo := b.Write(t)
	counts := t.TempDir()
	test := fmt.Sprintf(`n=$(cat %[1]s/$FIRSTBAD_COMMIT 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/$FIRSTBAD_COMMIT
		[ $(cat f) -lt 20 ] && exit 0; [ $(cat f) = 20 ] && [ $n = 2 ] && exit 0; exit 1`, counts)
	e := newEnv(t)
	tr, res := e.trustJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", test)
	if res.code != 1 || tr.Outcome != "suspect" || tr.Culprit != nil || !strings.Contains(tr.Message, "--flaky") {
		t.Fatalf("exit %d outcome %s culprit %v message %q", res.code, tr.Outcome, tr.Culprit, tr.Message)
	}
	// Without the confirmation, it is git bisect run's answer.
	tr, res = e.trustJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", test+" ", "--confirm=false", "--revert-check", "off")
	if res.code != 0 || tr.Outcome != "found" || *tr.Culprit != repo.SHAs[20] {
		t.Fatalf("without checks: exit %d outcome %s culprit %v", res.code, tr.Outcome, tr.Culprit)
	}
}

// A human corrects a verdict: the mark overrides the step, resume reaches
// another culprit; retest adds runs in firstbad's checkout, not the user's.
func TestMarkAndRetest(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 40)
	repo := b.Write(t)
	e := newEnv(t)
	before := snapshot(t, repo.Dir)
	// The test is wrong about c20..c24 (they "pass" though bad): the
	// search lands on c25.
	test := `n=$(cat f); [ $n -lt 20 ] || { [ $n -lt 25 ] && [ ! -e ../fixed ]; }`
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", test, "--revert-check", "off")
	if res.code != 0 || *r.Culprit != repo.SHAs[25] {
		t.Fatalf("exit %d culprit %v", res.code, r.Culprit)
	}
	var c24 string
	for _, s := range r.Steps {
		if s.Commit == repo.SHAs[24] || s.Commit == repo.SHAs[22] {
			c24 = s.Commit
		}
	}
	if c24 == "" {
		t.Fatalf("the search did not test c22 or c24: %v", tested(r))
	}
	// Bad input first: an unknown verdict, no reason, a commit outside the range.
	for _, args := range [][]string{{"mark", r.RunID, c24, "broken", "--reason", "x"}, {"mark", r.RunID, c24, "bad"},
		{"mark", r.RunID, "nosuchref", "bad", "--reason", "x"}} {
		if res := e.run(args...); res.code != 2 || res.stderr == "" {
			t.Errorf("%v: exit %d stderr %q", args, res.code, res.stderr)
		}
	}
	res = e.run("mark", r.RunID, c24, "bad", "--reason", "the log shows the bug; the test missed it")
	if res.code != 0 || !strings.Contains(res.stdout, "firstbad resume") {
		t.Fatalf("mark: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	r, res = e.runJSON("resume", r.RunID)
	if res.code != 0 || r.Outcome != "found" || *r.Culprit == repo.SHAs[25] {
		t.Fatalf("resume after the mark: exit %d outcome %s culprit %v\n%s", res.code, r.Outcome, r.Culprit, res.stderr)
	}
	md := e.run("report", r.RunID)
	if !strings.Contains(md.stdout, "marked by hand: the log shows the bug") || !strings.Contains(md.stdout, "firstbad retest "+r.RunID) {
		t.Errorf("the report does not show the mark or the retest line:\n%s", md.stdout)
	}
	log := e.run("log", r.RunID)
	if !strings.Contains(log.stdout, "git bisect bad "+c24) {
		t.Errorf("firstbad log does not carry the mark:\n%s", log.stdout)
	}
	// ... and git, replaying it (in a copy), reaches the same culprit.
	cp := filepath.Join(t.TempDir(), "copy")
	gittest.Git(t, ".", "clone", "-q", repo.Dir, cp)
	logf := filepath.Join(t.TempDir(), "bisect.log")
	os.WriteFile(logf, []byte(log.stdout), 0o644)
	if out := gittest.Git(t, cp, "bisect", "replay", logf); !strings.Contains(out, *r.Culprit+" is the first bad commit") {
		t.Errorf("git bisect replay:\n%s\nlog:\n%s", out, log.stdout)
	}
	// retest: the step runs again (exit code git's: bad = 1) and adds its runs.
	res = e.run("retest", r.RunID, "c30", "--repeat", "2")
	if res.code != 1 || !strings.Contains(res.stdout, "2 runs: 2 bad") {
		t.Fatalf("retest: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if diff := cmp.Diff(before, snapshot(t, repo.Dir)); diff != "" {
		t.Errorf("the user's repository changed:\n%s", diff)
	}
}

// The run's signature: the first bad step's exit code (not 1), or the bad
// endpoint's with --endpoint-check bad (a kernel run's default). A step
// that fails with another code says so instead of passing for the same
// failure.
func TestExitCodeSignature(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 40)
	repo := b.Write(t)
	e := newEnv(t)
	type report struct {
		Signature string `json:"signature"`
		From      string `json:"signature_from"`
		Steps     []step `json:"steps"`
	}
	run := func(check string) report {
		var rep report
		res := e.run("--json", "run", "--new", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--revert-check", "off",
			"--endpoint-check", check, "--exec", `n=$(cat f); [ $n -lt 10 ] && exit 0; [ $n -lt 19 ] && exit 3; exit 2`)
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil || res.code != 0 {
			t.Fatalf("exit %d (%v)\n%s", res.code, err, res.stderr)
		}
		return rep
	}
	if rep := run("bad"); rep.Signature != "exit code 2" || rep.From != "the bad endpoint "+repo.SHAs[tip][:12] {
		t.Errorf("--endpoint-check bad: signature %q from %q, want exit code 2 from the bad endpoint", rep.Signature, rep.From)
	}
	rep := run("lazy")
	if rep.Signature != "exit code 2" || !strings.HasSuffix(rep.From, "the first bad one") {
		t.Errorf("signature %q from %q, want exit code 2 from the first bad step", rep.Signature, rep.From)
	}
	noted := false
	for _, s := range rep.Steps {
		if s.Verdict == "bad" && s.Runs[0].ExitCode == 3 {
			noted = strings.Contains(s.Reason, "not the exit code 2")
		}
	}
	if !noted {
		t.Errorf("no step with exit 3 says it is not the signature's code: %+v", rep.Steps)
	}
}
