package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/gittest"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
)

// world is a fake environment for whole runs, in the manner of syzkaller's
// pkg/bisect tests: a linear history of n commits whose behaviour a table
// describes by commit number, evaluated without git checkouts, builds or
// QEMU.
type world struct {
	t     *testing.T
	repo  *gittest.Repo
	index map[string]int
	// judge says what commit i does on its call-th evaluation (1-based).
	judge func(i, call int) pipeline.Run
	// image names the kernel commit i builds (same name: same bytes).
	image func(i int) string
	// inputs, if set, lists the files commit i's build reads: kept beside
	// its kernel as a real build keeps them (kbuild.InputsFile).
	inputs func(i int) []string
	// fail, if set, makes evaluation number n an infrastructure error.
	fail  map[int]bool
	calls map[int]int
	n     int
	dir   string
	// invert is the exit-code meaning of fix mode: a passing run is the
	// new state.
	invert bool
	// broken says commit i's kernel does not build.
	broken func(i int) bool
	// reverted is what a commit outside the history (the revert check's)
	// does: good unless set.
	reverted *pipeline.Run
	// evaluated lists the commits evaluated, in order, outside the
	// history as -1.
	evaluated []int
	// kernel makes the run a kernel run (its options; the pipeline is
	// still this world).
	kernel *pipeline.KernelConfig
	// buildCost, if set, is what building commit to costs after building
	// commit from (-1: none yet); buildTime sums it over the run.
	buildCost func(from, to int) time.Duration
	buildTime time.Duration
	built     int // 1 + the commit built last (0: none)
	// last is the session of the last run.
	last *Session
	// reused counts the evaluations that took an earlier step's verdict
	// for the same image (Request.Tested) instead of testing.
	reused int
}

// newWorld makes a world whose commits each add a file of their own (so a
// revert applies cleanly), or with shared, all write file f (a revert of
// any commit but the last conflicts).
func newWorld(t *testing.T, n int, shared ...bool) *world {
	var b gittest.Builder
	switch {
	case len(shared) > 0 && shared[0]:
		b.Linear(-1, n)
	default:
		b.CommitFiles("commit 0", map[string]string{"f0": "0"})
		for i := 1; i < n; i++ {
			b.CommitFiles(fmt.Sprintf("commit %d", i), map[string]string{fmt.Sprintf("f%d", i): fmt.Sprint(i)}, i-1)
		}
	}
	w := &world{t: t, repo: b.Write(t), index: map[string]int{}, calls: map[int]int{}, dir: t.TempDir()}
	for i, s := range w.repo.SHAs {
		w.index[s] = i
	}
	return w
}

func (w *world) Evaluate(ctx context.Context, req pipeline.Request) (pipeline.Outcome, error) {
	w.n++
	if w.fail[w.n] {
		return pipeline.Outcome{}, outcome.InfraErr("build", errors.New("injected"))
	}
	i, ok := w.index[req.Commit]
	if !ok {
		w.evaluated = append(w.evaluated, -1)
		r := good
		if w.reverted != nil {
			r = *w.reverted
		}
		return pipeline.Outcome{Runs: []pipeline.Run{r}}, nil
	}
	w.evaluated = append(w.evaluated, i)
	var out pipeline.Outcome
	if w.broken != nil && w.broken(i) {
		d := time.Second
		return pipeline.Outcome{Build: &d, BuildLog: "build.log", Runs: []pipeline.Run{{Verdict: outcome.Skip, ExitCode: -1,
			Reason: "make bzImage failed: x.c:1: error: implicit declaration of function"}}}, nil
	}
	if w.image != nil {
		out.Kernel = filepath.Join(w.dir, w.image(i))
		if w.inputs != nil {
			art := filepath.Join(w.dir, fmt.Sprintf("%x", sha256.Sum256([]byte(w.image(i)))))
			os.MkdirAll(art, 0o755)
			os.WriteFile(filepath.Join(art, kbuild.InputsFile), []byte(strings.Join(w.inputs(i), "\n")), 0o644)
			out.Kernel = filepath.Join(art, "bzImage")
			d := time.Second
			if w.buildCost != nil {
				d = w.buildCost(w.built-1, i)
				w.buildTime += d
			}
			w.built = i + 1
			out.Build = &d
		}
		os.WriteFile(out.Kernel, []byte(w.image(i)), 0o644)
		if req.Tested != nil {
			if runs, ok := req.Tested(out.Kernel); ok {
				w.reused++
				out.Runs = runs
				return out, nil
			}
		}
	}
	for range max(req.Repeat, 1) {
		w.calls[i]++
		r := w.judge(i, w.calls[i])
		if w.invert && r.Verdict != outcome.Skip {
			r.Verdict = outcome.Bad - r.Verdict
		}
		out.Runs = append(out.Runs, r)
		if r.ExitCode >= 128 {
			out.Abort = "the reproducer exited with code 200"
			break
		}
	}
	return out, nil
}

// bad and good are runs of a deterministic test.
var (
	good = pipeline.Run{Verdict: outcome.Good, Reason: "exit 0"}
	bad  = pipeline.Run{Verdict: outcome.Bad, ExitCode: 1, Reason: "exit 1"}
	skip = pipeline.Run{Verdict: outcome.Skip, ExitCode: 125, Reason: "build failed"}
)

// from is a deterministic test whose change is at commit c.
func from(c int) func(i, call int) pipeline.Run {
	return func(i, _ int) pipeline.Run {
		if i >= c {
			return bad
		}
		return good
	}
}

func (w *world) session() *Session {
	return &Session{StateDir: w.t.TempDir(), CacheDir: w.t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewPipeline: func(Params, *git.Worktree) pipeline.Pipeline { return w }}
}

func (w *world) run(in Input) (*Result, error) {
	w.t.Helper()
	in.Repo = w.repo.Dir
	if in.Exec == "" {
		in.Exec = "unused"
	}
	if in.Bad == "" {
		in.Bad, in.Good = w.repo.SHAs[len(w.repo.SHAs)-1], []string{w.repo.SHAs[0]}
		if in.Fix {
			// --bad is the old, broken end; --good the new, fixed one.
			in.Bad, in.Good = w.repo.SHAs[0], []string{w.repo.SHAs[len(w.repo.SHAs)-1]}
		}
	}
	w.invert = in.Fix
	if w.kernel != nil && in.EndpointCheck == "" {
		in.EndpointCheck = "bad" // Resolve's default for a kernel run
	}
	strategy := in.Strategy
	if strategy == "fast" {
		in.Strategy = "" // Resolve sees an --exec run: fast is set below
	}
	p, _, err := Resolve(context.Background(), in)
	if err != nil {
		w.t.Fatal(err)
	}
	p.Kernel = w.kernel
	if w.kernel != nil && (strategy == "fast" || strategy == "" && !p.RetestSameKernel) {
		p.Strategy = "fast" // Resolve's default for a kernel run
	}
	w.last = w.session()
	return w.last.Start(context.Background(), p, false)
}

func (w *world) numbers(shas []string) []int {
	var out []int
	for _, s := range shas {
		out = append(out, w.index[s])
	}
	slices.Sort(out)
	return out
}

func TestSessionScenarios(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name    string
		n       int
		judge   func(i, call int) pipeline.Run
		image   func(i int) string
		in      Input
		outcome string
		culprit int   // -1: none
		cands   []int // ambiguous candidates
		message string
	}{
		{"plain", 64, from(40), nil, Input{}, outcome.Found, 40, nil, ""},
		{"broken builds around the culprit", 64, func(i, c int) pipeline.Run {
			if i >= 38 && i <= 43 {
				return skip
			}
			return from(41)(i, c)
		}, nil, Input{}, outcome.Ambiguous, -1, []int{38, 39, 40, 41, 42, 43, 44}, "only skipped"},
		{"broken builds away from the culprit", 64, func(i, c int) pipeline.Run {
			if i >= 10 && i <= 20 {
				return skip
			}
			return from(41)(i, c)
		}, nil, Input{}, outcome.Found, 41, nil, ""},
		{"fix mode", 64, func(i, c int) pipeline.Run {
			// A fix at 30: before it the test fails (exit 1), after it passes.
			if i >= 30 {
				return good
			}
			return bad
		}, nil, Input{Fix: true}, outcome.Found, 30, nil, ""},
		{"the culprit's image is its parent's", 64, from(40), func(i int) string {
			if i == 39 || i == 40 {
				return "same"
			}
			return "img" + string(rune('a'+i%26))
		}, Input{Confirm: &yes}, outcome.Suspect, 40, nil, "byte-identical"},
		{"the culprit's image is its parent's, accepted", 64, from(40), func(i int) string {
			if i == 39 || i == 40 {
				return "same"
			}
			return "img" + string(rune('a'+i%26))
		}, Input{AcceptSuspect: true}, outcome.Found, 40, nil, "byte-identical"},
		{"flaky test, classic: the confirmation disagrees", 64, func(i, c int) pipeline.Run {
			if i == 40 && c > 1 {
				return good
			}
			return from(40)(i, c)
		}, nil, Input{}, outcome.Suspect, -1, []int{40}, "--flaky"},
		{"flaky test, classic: the parent was good in the search", 64, func(i, c int) pipeline.Run {
			if i == 39 && c > 1 {
				return bad
			}
			return from(40)(i, c)
		}, nil, Input{}, outcome.Suspect, -1, []int{39}, "--flaky"},
		{"no confirmation asked: a flaky culprit is found as git would", 64, func(i, c int) pipeline.Run {
			if i == 40 && c > 1 {
				return good
			}
			return from(40)(i, c)
		}, nil, Input{Confirm: &no, RevertCheck: "off"}, outcome.Found, 40, nil, ""},
		{"flaky test, Bayesian strategy", 16, func(i, c int) pipeline.Run {
			if i >= 9 && c%3 != 1 {
				return bad // fails two runs in three on bad commits
			}
			return good
		}, nil, Input{Strategy: "bayes"}, outcome.Found, 9, nil, ""},
		{"reproducer aborts on an endpoint", 64, func(i, c int) pipeline.Run {
			return pipeline.Run{Verdict: outcome.Skip, ExitCode: 200, Reason: "exit 200: abort"}
		}, nil, Input{EndpointCheck: "upfront"}, outcome.RunAborted, -1, nil, "code 200"},
		{"reproducer aborts on a step", 64, func(i, c int) pipeline.Run {
			if i > 0 && i < 63 {
				return pipeline.Run{Verdict: outcome.Skip, ExitCode: 200}
			}
			return from(40)(i, c)
		}, nil, Input{}, outcome.RunAborted, -1, nil, "code 200"},
		{"reproducer aborts on the confirmation", 64, func(i, c int) pipeline.Run {
			if i == 40 && c > 1 {
				return pipeline.Run{Verdict: outcome.Skip, ExitCode: 200}
			}
			return from(40)(i, c)
		}, nil, Input{}, outcome.RunAborted, -1, nil, "code 200"},
		{"endpoint mismatch", 64, from(0), nil, Input{EndpointCheck: "upfront"}, outcome.EndpointMismatch, -1, nil, "older than your good ref"},
		{"the change is in the first step's commit: lazy check of the good end", 8, from(1), nil, Input{}, outcome.Found, 1, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, c.n)
			w.judge, w.image = c.judge, c.image
			res, err := w.run(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != c.outcome || !strings.Contains(res.Message, c.message) {
				t.Fatalf("outcome %s (%s), want %s with %q", res.Outcome, res.Message, c.outcome, c.message)
			}
			if c.culprit >= 0 && res.Culprit != w.repo.SHAs[c.culprit] {
				t.Errorf("culprit c%d, want c%d", w.index[res.Culprit], c.culprit)
			}
			if c.cands != nil {
				if diff := cmp.Diff(c.cands, w.numbers(res.Candidates)); diff != "" {
					t.Errorf("candidates (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// A Bayesian run whose runs the model cannot fit ends non-monotonic,
// naming the culprit and the misfit: here the range is bad at c3, good
// again from c4 to c9 and bad from c10, and the run starts from a bisect
// log that saw c3 bad three times and c8 good eight times (a search alone
// does not look on both sides).
func TestSessionBayesMisfit(t *testing.T) {
	w := newWorld(t, 16)
	w.judge = func(i, c int) pipeline.Run {
		if i == 3 || i >= 10 {
			return bad
		}
		return good
	}
	sha := w.repo.SHAs
	log := filepath.Join(t.TempDir(), "bisect.log")
	text := fmt.Sprintf("git bisect start\n# bad: [%[1]s] c15\ngit bisect bad %[1]s\n# good: [%[2]s] c0\ngit bisect good %[2]s\n", sha[15], sha[0])
	for range 3 {
		text += fmt.Sprintf("# bad: [%[1]s] c3\ngit bisect bad %[1]s\n", sha[3])
	}
	for range 8 {
		text += fmt.Sprintf("# good: [%[1]s] c8\ngit bisect good %[1]s\n", sha[8])
	}
	if err := os.WriteFile(log, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := w.run(Input{Strategy: "bayes", FromLog: log})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != outcome.NonMonotonic || res.Culprit != "" || !strings.Contains(res.Message, "does not look monotonic") {
		t.Fatalf("outcome %s culprit %q (%s), want non-monotonic", res.Outcome, res.Culprit, res.Message)
	}
	// c3 with c8 above it, or c10 with c3 below it: either explains all
	// but one commit's runs.
	if got := w.numbers(res.Candidates); !slices.Equal(got, []int{3, 8}) && !slices.Equal(got, []int{10, 3}) {
		t.Errorf("candidates %v: want the culprit and the commit that does not fit it, c3 and c8 or c10 and c3", got)
	}
}

// Kernels that do not build, step after step: the run stops and says the
// toolchain or config is the likely cause, instead of skipping everything.
func TestSessionStopsOnBuildFailuresInARow(t *testing.T) {
	three := 3
	for _, c := range []struct {
		name    string
		broken  func(i int) bool
		outcome string
	}{
		{"every build fails", func(int) bool { return true }, outcome.RunAborted},
		{"a broken stretch", func(i int) bool { return i >= 30 && i <= 33 }, outcome.Found},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 64)
			w.judge, w.broken = from(40), c.broken
			res, err := w.run(Input{MaxBuildFailures: &three})
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != c.outcome {
				t.Fatalf("outcome %s %v (%s), want %s; evaluated %v", res.Outcome, w.numbers([]string{res.Culprit}), res.Message, c.outcome, w.evaluated)
			}
			if c.outcome == outcome.RunAborted && !strings.Contains(res.Message, "--toolchain auto") {
				t.Errorf("message does not say what to do: %s", res.Message)
			}
		})
	}
}

// An infrastructure error mid-run is never a verdict: the run stops
// resumable, and the resumed run judges each commit once.
func TestSessionInfraErrorMidRun(t *testing.T) {
	w := newWorld(t, 64)
	w.judge, w.fail = from(40), map[int]bool{3: true}
	s := w.session()
	no := false
	p, _, err := Resolve(context.Background(), Input{Repo: w.repo.Dir, Good: []string{w.repo.SHAs[0]}, Bad: w.repo.SHAs[63], Exec: "unused",
		Confirm: &no, RevertCheck: "off"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Start(context.Background(), p, false)
	if !outcome.IsInfra(err) || res == nil || res.Outcome != outcome.RunInterrupted {
		t.Fatalf("want an infrastructure error leaving the run resumable, got %v, %+v", err, res)
	}
	j, _ := journal.Open(s.RunDir(res.RunID))
	steps, _ := j.Steps()
	j.Close()
	if len(steps) != 3 || steps[2].State != journal.StateError {
		t.Fatalf("steps after the fault: %+v", steps)
	}
	res, err = s.Resume(context.Background(), res.RunID)
	if err != nil || res.Outcome != outcome.Found || res.Culprit != w.repo.SHAs[40] {
		t.Fatalf("resume: %v %+v", err, res)
	}
	for i, n := range w.calls {
		if n != 1 {
			t.Errorf("commit c%d judged %d times", i, n)
		}
	}
}

// The checks after the search: the revert check's verdict decides between
// found and suspect, and a run cut short during the checks reuses, on
// resume, the checks already done.
func TestSessionRevertCheck(t *testing.T) {
	stillBad := bad
	for _, c := range []struct {
		name     string
		reverted *pipeline.Run
		outcome  string
		message  string
	}{
		{"the revert makes it good", nil, outcome.Found, ""},
		{"still bad with the culprit reverted", &stillBad, outcome.Suspect, "still bad"},
		{"the revert conflicts", nil, outcome.Found, "conflicts (f)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 64, c.outcome == outcome.Found && c.message != "")
			w.judge, w.reverted = from(40), c.reverted
			res, err := w.run(Input{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != c.outcome || !strings.Contains(res.Message, c.message) || res.Culprit != w.repo.SHAs[40] {
				t.Fatalf("outcome %s culprit c%d (%s), want %s with %q", res.Outcome, w.index[res.Culprit], res.Message, c.outcome, c.message)
			}
			// The checks come last: the culprit, its parent, the revert
			// (not tested when it conflicts).
			want := []int{40, 39, -1}
			if strings.Contains(c.message, "conflicts") {
				want = []int{40, 40, 39}
			}
			if diff := cmp.Diff(want, w.evaluated[len(w.evaluated)-3:]); diff != "" {
				t.Errorf("checks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSessionChecksResume(t *testing.T) {
	w := newWorld(t, 64)
	w.judge = from(40)
	s := w.session()
	p, _, err := Resolve(context.Background(), Input{Repo: w.repo.Dir, Good: []string{w.repo.SHAs[0]}, Bad: w.repo.SHAs[63], Exec: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	// 6 search steps, then the confirmation's two; the revert check's
	// evaluation fails.
	w.fail = map[int]bool{9: true}
	res, err := s.Start(context.Background(), p, false)
	if !outcome.IsInfra(err) || res.Outcome != outcome.RunInterrupted {
		t.Fatalf("want the revert check's infrastructure error, got %v %+v (evaluated %v)", err, res, w.evaluated)
	}
	res, err = s.Resume(context.Background(), res.RunID)
	if err != nil || res.Outcome != outcome.Found || res.Culprit != w.repo.SHAs[40] {
		t.Fatalf("resume: %v %+v", err, res)
	}
	if w.calls[40] != 2 || w.calls[39] != 2 {
		t.Errorf("culprit and parent judged %d and %d times, want 2 (search, confirmation): the resumed run redid done checks", w.calls[40], w.calls[39])
	}
	if diff := cmp.Diff([]int{40, 39, -1}, w.evaluated[len(w.evaluated)-3:]); diff != "" {
		t.Errorf("evaluations (-want +got):\n%s", diff)
	}
}

// A kernel run is about its bad endpoint's crash: another crash is a skip,
// not the same bug, unless --any-crash.
func TestSessionCrashSignature(t *testing.T) {
	kasan := pipeline.Run{Verdict: outcome.Bad, Crash: "KASAN: use-after-free in foo", Reason: "crash"}
	other := pipeline.Run{Verdict: outcome.Bad, Crash: "WARNING in bar", Reason: "crash"}
	judge := func(i, _ int) pipeline.Run {
		switch {
		case i >= 40:
			return kasan
		case i == 39:
			return other
		}
		return good
	}
	// Another crash from 20 on hides the bad endpoint's until 40: the
	// search's first bad step (the midpoint, 31) shows the other one.
	masked := func(i, _ int) pipeline.Run {
		switch {
		case i >= 40:
			return kasan
		case i >= 20:
			return other
		}
		return good
	}
	for _, c := range []struct {
		name     string
		judge    func(i, c int) pipeline.Run
		kernel   pipeline.KernelConfig
		endpoint string
		outcome  string
		want     []int
	}{
		{"another crash is a skip", judge, pipeline.KernelConfig{}, "", outcome.Ambiguous, []int{39, 40}},
		{"--any-crash", judge, pipeline.KernelConfig{AnyCrash: true}, "", outcome.Found, []int{39}},
		{"--crash-match is the user's signature", judge, pipeline.KernelConfig{CrashMatch: "."}, "", outcome.Found, []int{39}},
		{"the signature is the bad endpoint's, not the first bad step's", masked, pipeline.KernelConfig{}, "", outcome.Ambiguous,
			[]int{20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40}},
		{"--endpoint-check lazy takes the first bad step's", masked, pipeline.KernelConfig{}, "lazy", outcome.Found, []int{20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 64)
			w.judge, w.kernel = c.judge, &c.kernel
			no := false
			res, err := w.run(Input{Confirm: &no, RevertCheck: "off", EndpointCheck: c.endpoint})
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != c.outcome {
				t.Fatalf("outcome %s %v (%s), want %s; evaluated %v", res.Outcome, w.numbers([]string{res.Culprit}), res.Message, c.outcome, w.evaluated)
			}
			if diff := cmp.Diff(c.want, w.numbers(res.Candidates)); diff != "" {
				t.Errorf("candidates (-want +got):\n%s", diff)
			}
		})
	}
}

// A kernel run takes the verdict of an earlier step that tested the same
// image (kbuild gave a commit whose changes its build never read the
// earlier build's artifact) instead of booting it: the culprit is the
// same, with fewer boots. Not with --retest-same-kernel, not under bayes,
// not once a step was flaky.
func TestSessionSameKernelVerdict(t *testing.T) {
	// The kernel changes only at these commits; the culprit is one.
	changes := []int{0, 5, 9, 21, 30, 44, 50}
	image := func(i int) string {
		k := 0
		for _, c := range changes {
			if c <= i {
				k = c
			}
		}
		return fmt.Sprintf("k%d", k)
	}
	flakyOnce := func(i, call int) pipeline.Run {
		if i == 63 && call == 1 { // the bad endpoint, tested first
			return pipeline.Run{Verdict: outcome.Good, Reason: "exit 0"}
		}
		return from(21)(i, call)
	}
	for _, c := range []struct {
		name   string
		judge  func(i, call int) pipeline.Run
		in     Input
		reuse  bool
		repeat int
	}{
		{"reused", from(21), Input{}, true, 1},
		{"--retest-same-kernel", from(21), Input{RetestSameKernel: true}, false, 1},
		{"after a flaky step", flakyOnce, Input{}, false, 2},
		{"bayes", from(21), Input{Strategy: "bayes"}, false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 64)
			w.judge, w.image, w.kernel = c.judge, image, &pipeline.KernelConfig{}
			no := false
			c.in.Confirm, c.in.RevertCheck, c.in.Repeat = &no, "off", c.repeat
			res, err := w.run(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != outcome.Found || res.Culprit != w.repo.SHAs[21] {
				t.Fatalf("outcome %s culprit c%d (%s), want found c21", res.Outcome, w.index[res.Culprit], res.Message)
			}
			if (w.reused > 0) != c.reuse {
				t.Errorf("%d of %d evaluations took an earlier verdict; want reuse %v", w.reused, len(w.evaluated), c.reuse)
			}
		})
	}
}
