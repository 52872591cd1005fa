package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/lock"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/report"
	"github.com/firstbad/firstbad/internal/search"
)

// ErrInterrupted is returned when the run was stopped (Ctrl-C, SIGTERM)
// before it finished; the journal says what is left to do.
var ErrInterrupted = outcome.ErrInterrupted

// Progress is what a live display shows.
type Progress struct {
	RunID    string
	Step     int // 1-based search step
	EstSteps int // steps expected in all (done + left)
	Commit   string
	Subject  string
	Stage    string // test, done
	Started  time.Time
	Verdict  string // set when Stage is "done"
	Reason   string
	Kind     string // search, endpoint or confirm
}

// Label is "step k/≈n" for search steps, else the kind.
func (p Progress) Label() string {
	if p.Kind != "" && p.Kind != "search" {
		return p.Kind
	}
	return fmt.Sprintf("step %d/≈%d", p.Step, p.EstSteps)
}

// Session runs and resumes bisects under a state dir and a cache dir.
type Session struct {
	StateDir string
	CacheDir string
	Log      *slog.Logger
	Progress func(Progress)
	// NewPipeline, if set, replaces the pipeline a run would build (tests
	// use it to inject faults).
	NewPipeline func(p Params, wt *git.Worktree) pipeline.Pipeline
}

// Result is how a run ended.
type Result struct {
	RunID      string
	Outcome    string
	Culprit    string
	Candidates []string
	Message    string
}

// RunsDir holds one directory per run.
func (s *Session) RunsDir() string { return filepath.Join(s.StateDir, "runs") }

// RunDir is the directory of one run.
func (s *Session) RunDir(id string) string { return filepath.Join(s.RunsDir(), id) }

func newRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// Start begins a new run with resolved params. If an unfinished run with the
// same parameters exists, it refuses and names it, unless fresh is set.
func (s *Session) Start(ctx context.Context, p Params, fresh bool) (*Result, error) {
	if !fresh {
		runs, _ := s.List()
		for _, r := range runs {
			if r.Outcome != journal.OutcomeRunning && r.Outcome != journal.OutcomeInterrupted {
				continue
			}
			var old Params
			if json.Unmarshal(r.Params, &old) == nil && old.Fingerprint() == p.Fingerprint() {
				return nil, outcome.InputErr("run %s with the same arguments is unfinished (%s): continue it with `firstbad resume %s`, or pass --new to start over", r.ID, r.Outcome, r.ID)
			}
		}
	}
	params, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	id := newRunID()
	dir := s.RunDir(id)
	// The journal is made whole in a hidden directory and renamed into
	// place: a controller killed meanwhile leaves no half-made run.
	tmp := filepath.Join(s.RunsDir(), ".new-"+id)
	j, err := journal.Create(tmp, journal.Run{ID: id, Created: time.Now(), Params: params})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	j.Close()
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	l, err := lock.TryAcquire(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("state dir %s: %w", s.StateDir, err)
	}
	defer l.Release()
	if j, err = journal.Open(dir); err != nil {
		return nil, err
	}
	defer j.Close()
	return s.loop(ctx, j, p)
}

// Resume continues an unfinished run. A finished run's result is returned
// as it stands.
func (s *Session) Resume(ctx context.Context, id string) (*Result, error) {
	dir := s.RunDir(id)
	l, err := lock.TryAcquire(filepath.Join(dir, "lock"))
	if err != nil {
		var held *lock.HeldError
		if errors.As(err, &held) {
			return nil, outcome.InputErr("run %s is running now (pid %d)", id, held.PID)
		}
		return nil, err
	}
	defer l.Release()
	j, err := journal.Open(dir)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	r, err := j.Run()
	if err != nil {
		return nil, err
	}
	if r.Outcome != journal.OutcomeRunning && r.Outcome != journal.OutcomeInterrupted {
		return &Result{RunID: r.ID, Outcome: r.Outcome, Culprit: r.Culprit, Candidates: r.Candidates, Message: r.Message}, nil
	}
	var p Params
	if err := json.Unmarshal(r.Params, &p); err != nil {
		return nil, fmt.Errorf("run %s: parameters unreadable: %w", id, err)
	}
	if n, err := j.InterruptRunning("the controller stopped during this step"); err != nil {
		return nil, err
	} else if n > 0 {
		s.Log.Info("a step was cut short when the run stopped; it runs again", "run", id)
	}
	return s.loop(ctx, j, p)
}

// loop is the bisect: decide, evaluate, record, until the search is done.
func (s *Session) loop(ctx context.Context, j *journal.Journal, p Params) (*Result, error) {
	run, err := j.Run()
	if err != nil {
		return nil, err
	}
	id := run.ID
	if err := j.SetOutcome(journal.OutcomeRunning, "", nil, ""); err != nil {
		return nil, err
	}
	stop := func(outcome, culprit string, cands []string, msg string) (*Result, error) {
		if err := j.SetOutcome(outcome, culprit, cands, msg); err != nil {
			return nil, err
		}
		return &Result{RunID: id, Outcome: outcome, Culprit: culprit, Candidates: cands, Message: msg}, nil
	}
	infra := func(err error) (*Result, error) {
		// Not a verdict: the run stays resumable once the cause is fixed.
		msg := fmt.Sprintf("infrastructure error: %v", err)
		res, e := stop(journal.OutcomeInterrupted, "", nil, msg)
		if e != nil {
			return nil, e
		}
		return res, outcome.InfraErr("run "+id, err)
	}

	interrupted := func() (*Result, error) {
		if _, e := stop(journal.OutcomeInterrupted, "", nil, "interrupted"); e != nil {
			return nil, e
		}
		return &Result{RunID: id, Outcome: journal.OutcomeInterrupted}, ErrInterrupted
	}

	src, err := git.Open(ctx, p.Repo)
	if err != nil {
		return infra(err)
	}
	clone, err := git.EnsureClone(ctx, src, s.CacheDir)
	if err != nil {
		return infra(err)
	}
	if err := clone.Sync(ctx, append([]string{p.Bad}, p.Good...)...); err != nil {
		return infra(err)
	}
	rg := git.Range{Bad: p.Bad, Good: p.Good, FirstParent: p.FirstParent, Paths: p.Paths}
	commits, err := clone.RevList(ctx, rg)
	if err != nil {
		return infra(err)
	}
	if len(commits) == 0 {
		return nil, outcome.InputErr("no commits between %s and %s", short(p.Good[0]), short(p.Bad))
	}
	nodes := make([]search.Commit, len(commits))
	for i, c := range commits {
		nodes[i] = search.Commit{ID: c.ID, Parents: c.Parents, Time: c.Time, TreeSame: c.TreeSame}
	}
	g, err := search.NewGraph(nodes, p.Bad, p.FirstParent)
	if err != nil {
		return infra(err)
	}

	wt, err := clone.Worktree(ctx, p.Bad)
	if err != nil {
		return infra(err)
	}
	defer wt.Release()
	var pipe pipeline.Pipeline = &pipeline.Exec{Worktree: wt, Command: p.Exec, Timeout: time.Duration(p.Timeout), Invert: p.Invert, RunID: id}
	if p.Kernel != nil {
		ks, err := pipeline.NewKernelStep(*p.Kernel, wt, s.CacheDir, s.Log)
		if err != nil {
			return infra(err)
		}
		defer ks.Close()
		pipe = ks
	}
	if s.NewPipeline != nil {
		pipe = s.NewPipeline(p, wt)
	}
	rn := &runner{s: s, j: j, p: p, id: id, repo: &clone.Repo, pipe: pipe}

	steps, err := j.Steps()
	if err != nil {
		return infra(err)
	}
	strategy := p.strategy(g, steps)
	obs := p.observations()
	done := 0
	verified := false // the 126/127 check of git bisect run is done
	for _, st := range steps {
		if o, ok := observation(st); ok && p.feeds(st) {
			obs = append(obs, o)
			if st.Kind == journal.KindSearch {
				done++
				verified = true
			}
		}
	}
	// record keeps a finished step for the search and the cost model.
	record := func(st journal.Step) {
		steps = append(steps, st)
		if o, ok := observation(st); ok && p.feeds(st) {
			obs = append(obs, o)
		}
		if b, ok := strategy.(*search.Bayes); ok {
			b.SetCosts(p.costs(steps))
		}
	}
	s.Log.Info("bisecting", "run", id, "candidates", g.Len(), "done", done)
	endpoints := map[string]string{} // commit -> verdict, from earlier in this run
	for _, st := range steps {
		if st.Kind == journal.KindEndpoint && st.State == journal.StateDone {
			endpoints[st.Commit] = st.Verdict
		}
	}
	// checkEndpoint tests an endpoint (once per run) and says whether it
	// disagrees with what the user said about it.
	checkEndpoint := func(commit, want string) (string, error) {
		v, ok := endpoints[commit]
		if !ok {
			st, out, err := rn.evaluate(ctx, journal.KindEndpoint, commit, 0, 0, 0)
			if err != nil {
				return "", err
			}
			if out.Abort != "" {
				return "", fmt.Errorf("%s", out.Abort)
			}
			v = st.Verdict
			endpoints[commit] = v
			record(st)
		}
		if p.bayes() || v == want || v == "skip" {
			// Under the Bayesian strategy an endpoint's result is one
			// more observation, never a stop.
			return "", nil
		}
		name := map[string]string{"good": p.TermOld, "bad": p.TermNew}
		if want == "good" {
			return fmt.Sprintf("%s commit %s tested %s: the change is older than your %s ref, or the test is wrong", name[want], short(commit), name[v], name[want]), nil
		}
		return fmt.Sprintf("%s commit %s tested %s: the change is newer than your %s ref, or the test does not reproduce it", name[want], short(commit), name[v], name[want]), nil
	}
	mismatch := func(msg string, err error) (*Result, error) {
		if err != nil {
			if ctx.Err() != nil {
				return interrupted()
			}
			return infra(err)
		}
		return stop(journal.OutcomeEndpointMismatch, "", nil, msg)
	}
	if p.EndpointCheck == "upfront" {
		for _, e := range append([][2]string{{p.Bad, "bad"}}, goodPairs(p.Good)...) {
			if msg, err := checkEndpoint(e[0], e[1]); msg != "" || err != nil {
				return mismatch(msg, err)
			}
		}
	}

	for {
		d, err := strategy.Decide(obs)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "both good and bad") {
				msg += ": the test looks flaky; the Bayesian strategy (--strategy bayes) is made for that"
			}
			return stop(journal.OutcomeAborted, "", nil, msg)
		}
		if d.Done && p.bayes() {
			return rn.bayesDone(ctx, d, stop, interrupted, infra)
		}
		if d.Done {
			if d.Culprit != "" && p.EndpointCheck == "lazy" {
				// Spend a test on an endpoint only when the answer hinges
				// on it: all tested commits on one side.
				anyGood, anyBad := false, false
				for _, o := range obs {
					anyGood = anyGood || o.Verdict == outcome.Good
					anyBad = anyBad || o.Verdict == outcome.Bad
				}
				var checks [][2]string
				if !anyGood {
					checks = append(checks, goodPairs(p.Good)...)
				}
				if !anyBad {
					checks = append(checks, [2]string{p.Bad, "bad"})
				}
				for _, e := range checks {
					if msg, err := checkEndpoint(e[0], e[1]); msg != "" || err != nil {
						return mismatch(msg, err)
					}
				}
			}
			if d.Culprit != "" {
				return rn.found(ctx, d.Culprit, stop, interrupted, infra)
			}
			return stop(journal.OutcomeAmbiguous, "", d.Ambiguous,
				fmt.Sprintf("only skipped commits are left: the first %s commit is one of %d", p.TermNew, len(d.Ambiguous)))
		}
		stepNo := done + 1
		st, out, err := rn.evaluate(ctx, journal.KindSearch, d.Next, stepNo, done+1+d.StepsLeft, d.Runs)
		if err != nil {
			if ctx.Err() != nil {
				return interrupted()
			}
			return infra(err)
		}
		if out.Abort != "" {
			return stop(journal.OutcomeAborted, "", nil, out.Abort)
		}
		if !verified {
			verified = true
			if code := out.Runs[0].ExitCode; code == 126 || code == 127 {
				// As git bisect run: the same code on a good commit means
				// the command itself is broken, not the commit.
				_, vout, err := rn.evaluate(ctx, journal.KindEndpoint, p.Good[0], 0, 0, 0)
				if err != nil {
					return infra(err)
				}
				if len(vout.Runs) > 0 && vout.Runs[0].ExitCode == code {
					return stop(journal.OutcomeAborted, "", nil, fmt.Sprintf(
						"the reproducer exits %d on the %s commit too: the command is not found or not executable (see %s)", code, p.TermOld, vout.Runs[0].Output))
				}
			}
		}
		if st.Flaky && !p.bayes() {
			s.Log.Warn("this test looks flaky: the same commit gave both results; the Bayesian strategy (--strategy bayes) is made for that",
				"commit", short(st.Commit))
		}
		record(st)
		done++
	}
}

// runner is one run in progress.
type runner struct {
	s    *Session
	j    *journal.Journal
	p    Params
	id   string
	repo *git.Repo // firstbad's clone
	pipe pipeline.Pipeline
}

// evaluate runs one step through the pipeline and journals it: begun before
// the test starts, finished (with verdict and evidence) in one transaction.
// runs is how many runs the step makes (0: the run's --repeat).
func (rn *runner) evaluate(ctx context.Context, kind, commit string, stepNo, est, runs int) (journal.Step, pipeline.Outcome, error) {
	s, j, p, id := rn.s, rn.j, rn.p, rn.id
	subject := ""
	if info, err := rn.repo.Info(ctx, commit, false); err == nil {
		subject = info.Subject
	}
	st := journal.Step{Kind: kind, Commit: commit, Subject: subject}
	seq, err := j.BeginStep(st)
	if err != nil {
		return st, pipeline.Outcome{}, err
	}
	st.Seq = seq
	started := time.Now()
	s.progress(Progress{RunID: id, Step: stepNo, EstSteps: est, Commit: commit, Subject: subject, Stage: "start", Started: started, Kind: kind})
	if runs <= 0 {
		runs = p.Repeat
	}
	out, err := rn.pipe.Evaluate(ctx, pipeline.Request{Commit: commit, Step: stepNo, Repeat: runs,
		EvidenceDir: filepath.Join(j.Dir, "steps", strconv.Itoa(seq)),
		Stage: func(stage string) {
			s.progress(Progress{RunID: id, Step: stepNo, EstSteps: est, Commit: commit, Subject: subject, Stage: stage, Started: started, Kind: kind})
		}})
	st.Duration = time.Since(started).Seconds()
	if err != nil {
		st.State, st.Verdict = journal.StateError, "error"
		st.Reason = err.Error()
		if ctx.Err() != nil {
			st.State, st.Reason = journal.StateInterrupted, "interrupted"
		}
		// The step must be on record even if the context is gone.
		if e := j.FinishStep(st); e != nil {
			s.Log.Error("journal", "err", e)
		}
		return st, out, err
	}
	v, flaky := pipeline.Combine(out.Runs)
	st.State, st.Verdict, st.Flaky = journal.StateDone, v.String(), flaky
	var test float64
	for i, r := range out.Runs {
		test += r.Duration.Seconds()
		st.Attempts = append(st.Attempts, journal.Attempt{Verdict: r.Verdict.String(), ExitCode: r.ExitCode,
			Duration: r.Duration.Seconds(), Crash: r.Crash, Reason: r.Reason, Output: r.Output})
		if i == 0 || r.Verdict == v {
			st.Reason, st.Crash = r.Reason, r.Crash
		}
		if st.Evidence.TestOutput == "" || r.Verdict == v {
			st.Evidence.TestOutput = r.Output
		}
	}
	if len(out.Runs) > 1 {
		st.Reason = summarize(out.Runs, st.Reason)
	}
	if flaky {
		st.Reason += " (flaky: good and bad runs)"
	}
	st.Test = &test
	st.Build, st.Boot = pipeline.Seconds(out.Build), pipeline.Seconds(out.Boot)
	st.Evidence.BuildLog, st.Evidence.ConsoleLog, st.Evidence.Kernel = out.BuildLog, out.ConsoleLog, out.Kernel
	if out.Abort != "" {
		st.State, st.Verdict, st.Reason = journal.StateError, "error", out.Abort
	}
	if err := j.FinishStep(st); err != nil {
		return st, out, err
	}
	s.progress(Progress{RunID: id, Step: stepNo, EstSteps: est, Commit: commit, Subject: subject, Stage: "done",
		Started: started, Verdict: st.Verdict, Reason: st.Reason, Kind: kind})
	return st, out, nil
}

// summarize counts the verdicts of repeated runs: "3 runs: 2 bad, 1 good; exit 1".
func summarize(runs []pipeline.Run, reason string) string {
	n := map[string]int{}
	for _, r := range runs {
		n[r.Verdict.String()]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	msg := fmt.Sprintf("%d runs:", len(runs))
	for i, k := range keys {
		if i > 0 {
			msg += ","
		}
		msg += fmt.Sprintf(" %d %s", n[k], k)
	}
	return msg + "; " + reason
}

func (s *Session) progress(p Progress) {
	if s.Progress != nil {
		s.Progress(p)
	}
}

// List returns the runs in the state dir, oldest first. Runs whose journal
// cannot be read are returned with Outcome "unreadable".
func (s *Session) List() ([]journal.Run, error) {
	entries, err := os.ReadDir(s.RunsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var runs []journal.Run
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".new-") {
			// A run whose creation was cut short: never started.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				os.RemoveAll(filepath.Join(s.RunsDir(), e.Name()))
			}
			continue
		}
		if !e.IsDir() {
			continue
		}
		j, err := journal.Open(s.RunDir(e.Name()))
		if err != nil {
			runs = append(runs, journal.Run{ID: e.Name(), Outcome: "unreadable", Message: err.Error()})
			continue
		}
		r, err := j.Run()
		j.Close()
		if err != nil {
			runs = append(runs, journal.Run{ID: e.Name(), Outcome: "unreadable", Message: err.Error()})
			continue
		}
		runs = append(runs, r)
	}
	sort.Slice(runs, func(a, b int) bool { return runs[a].ID < runs[b].ID })
	return runs, nil
}

// Latest picks the run a command without RUN means: the most recent
// unfinished one, else (if any) the most recent.
func (s *Session) Latest(unfinishedOnly bool) (string, error) {
	runs, err := s.List()
	if err != nil {
		return "", err
	}
	for i := len(runs) - 1; i >= 0; i-- {
		if o := runs[i].Outcome; o == journal.OutcomeRunning || o == journal.OutcomeInterrupted {
			return runs[i].ID, nil
		}
	}
	if unfinishedOnly || len(runs) == 0 {
		return "", outcome.InputErr("no unfinished run in %s", s.RunsDir())
	}
	return runs[len(runs)-1].ID, nil
}

func goodPairs(goods []string) [][2]string {
	var out [][2]string
	for _, g := range goods {
		out = append(out, [2]string{g, "good"})
	}
	return out
}

// confirm retests the culprit (expected bad) and its first parent (expected
// good), from the artifact cache for kernels, and says what it found.
func (rn *runner) confirm(ctx context.Context, culprit string) (string, error) {
	parents, err := rn.repo.Run(ctx, "show", "-s", "--format=%P", "--end-of-options", culprit)
	if err != nil {
		return "", err
	}
	parent, _, _ := strings.Cut(strings.TrimSpace(string(parents)), " ")
	c, cout, err := rn.evaluate(ctx, journal.KindConfirm, culprit, 0, 0, 0)
	if err != nil {
		return "", err
	}
	var notes []string
	if c.Verdict != "bad" {
		notes = append(notes, fmt.Sprintf("the culprit tested %s on the confirmation run (flaky test? the Bayesian strategy, --strategy bayes, is made for that)", c.Verdict))
	}
	if parent == "" {
		return strings.Join(notes, "; "), nil
	}
	pst, pout, err := rn.evaluate(ctx, journal.KindConfirm, parent, 0, 0, 0)
	if err != nil {
		return "", err
	}
	if pst.Verdict != "good" {
		notes = append(notes, fmt.Sprintf("the culprit's parent tested %s on the confirmation run", pst.Verdict))
	}
	if report.SameContent(cout.Kernel, pout.Kernel) {
		notes = append(notes, "the culprit's kernel image is byte-identical to its parent's: this change cannot matter to this config (documentation, another architecture, or a flaky test)")
	}
	return strings.Join(notes, "; "), nil
}
