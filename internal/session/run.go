package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/search"
)

// run is one bisect in progress: its journal, its pipeline, and what the
// search knows so far.
type run struct {
	s        *Session
	j        *journal.Journal
	p        Params
	id       string
	repo     *git.Repo // firstbad's clone
	pipe     pipeline.Pipeline
	strategy search.Strategy
	total    int

	steps     []journal.Step
	obs       []search.Observation
	endpoints map[string]journal.Step // endpoint checks done, by commit
	done      int                     // search steps done
	checked   bool                    // git bisect run's 126/127 check is settled
	warned    bool                    // the "looks flaky" warning was given
	sig       signature               // the failure the run is about
	failProb  float64                 // a Bayesian run's estimate of p at its end
	// full is set once a journal write needed the reserve: the disk is
	// full, and the run stops after recording where it is.
	full error
}

// runLoop sets a run up from its journal and bisects until it ends.
func (s *Session) runLoop(ctx context.Context, j *journal.Journal, p Params, prep *prepared) (*Result, error) {
	r, release, err := s.setUp(ctx, j, p, prep)
	if err != nil {
		return nil, err
	}
	defer release()
	return r.loop(ctx)
}

// setUp makes a run from its journal: a checkout slot, the pipeline, and
// the search state the finished steps leave. release gives the slot and
// the disk reserve back.
func (s *Session) setUp(ctx context.Context, j *journal.Journal, p Params, prep *prepared) (*run, func(), error) {
	hdr, err := j.Run()
	if err != nil {
		return nil, nil, outcome.InfraErr("journal", err)
	}
	steps, err := j.Steps()
	if err != nil {
		return nil, nil, outcome.InfraErr("journal", err)
	}
	wt, err := prep.clone.Worktree(ctx, p.Bad)
	if err != nil {
		return nil, nil, outcome.InfraErr("checkout", err)
	}
	wt.NoSubmodules = p.NoSubmodules
	r := &run{s: s, j: j, p: p, id: hdr.ID, repo: &prep.clone.Repo, total: prep.total, endpoints: map[string]journal.Step{}}
	if r.pipe, err = s.pipeline(p, wt, hdr.ID); err != nil {
		wt.Release()
		return nil, nil, err
	}
	if r.strategy, err = p.strategy(prep.graph, prep.nodes, prep.files, steps); err != nil {
		wt.Release()
		return nil, nil, outcome.InfraErr("search", err)
	}
	r.obs = p.observations()
	for _, st := range steps {
		r.replay(st)
	}
	reserve := reserveRoom(j.Dir)
	return r, func() { os.Remove(reserve); wt.Release() }, nil
}

// pipeline is what evaluates a commit in this run.
func (s *Session) pipeline(p Params, wt *git.Worktree, id string) (pipeline.Pipeline, error) {
	if s.NewPipeline != nil {
		return s.NewPipeline(p, wt), nil
	}
	if p.Kernel == nil {
		return &pipeline.Exec{Worktree: wt, Command: p.Exec, Timeout: p.Timeout.D(), Invert: p.Invert, RunID: id}, nil
	}
	if s.Tester == nil {
		return nil, outcome.InfraErr("pipeline", errors.New("a kernel run needs its boot-and-test stage (Session.Tester)"))
	}
	// The context only bounds fetching a machine's config, which the
	// boot-and-test stage has done when it was made.
	return pipeline.NewKernelStep(context.Background(), *p.Kernel, wt, s.Tester, s.CacheDir, s.Log)
}

// replay takes a finished step from the journal into what the search knows.
func (r *run) replay(st journal.Step) {
	r.steps = append(r.steps, st)
	if st.State != journal.StateDone {
		return
	}
	if r.sig.learn(st) && r.sig.String() != "" {
		r.s.Log.Info("the run's signature (a step failing otherwise is told apart)", "signature", r.sig.String(), "from", r.sig.from(r.p.TermNew))
	}
	switch st.Kind {
	case journal.KindEndpoint:
		r.endpoints[st.Commit] = st
	case journal.KindSearch:
		r.done++
	}
	r.obs = r.p.fold(r.obs, st)
	if s, ok := r.strategy.(interface{ SetCosts(search.Costs) }); ok {
		s.SetCosts(r.p.costs(r.steps))
	}
	if s, ok := r.strategy.(learner); ok {
		before := s.sameKernel()
		if err := s.learn(st); err != nil {
			r.s.Log.Warn("the search over kernels failed to redo its marks", "err", err)
		} else if s.sameKernel() != before {
			r.s.Log.Info("commits that build their parent's kernel (they change no file the builds read, nothing of the build system)",
				"same_kernel", s.sameKernel(), "of", r.total)
		}
	}
}

// loop is the bisect: check, decide, evaluate, record, until it ends.
func (r *run) loop(ctx context.Context) (*Result, error) {
	if err := r.j.SetOutcome(outcome.Running, "", nil, ""); err != nil {
		return nil, outcome.InfraErr("journal", err)
	}
	r.s.Log.Info("bisecting", "run", r.id, "candidates", r.total, "done", r.done)
	if r.p.EndpointCheck == "upfront" || r.p.EndpointCheck == "bad" {
		if end, err := r.checkEndpoints(ctx, true, r.p.EndpointCheck == "upfront"); end != nil || err != nil {
			return end, err
		}
	}
	for {
		if r.full != nil {
			return r.fail(ctx, r.full)
		}
		if end, err := r.commandCheck(ctx); end != nil || err != nil {
			return end, err
		}
		d, err := r.strategy.Decide(r.obs)
		if err != nil {
			return r.inconsistent(err)
		}
		if d.Done {
			if retry, err := r.proveParents(ctx, d); err != nil || retry {
				if err != nil {
					return r.fail(ctx, err)
				}
				continue
			}
			return r.conclude(ctx, d)
		}
		if end, err := r.searchStep(ctx, r.cheaper(ctx, d)); end != nil || err != nil {
			return end, err
		}
	}
}

// proveParents, in a search over kernels, makes sure the culprit's parents
// are good by test or by proof; retry says one is to be tested first.
func (r *run) proveParents(ctx context.Context, d search.Decision) (bool, error) {
	f, ok := r.strategy.(*fast)
	if !ok || d.Culprit == "" {
		return false, nil
	}
	retry, why, err := f.prove(ctx, r.repo, d.Culprit, r.obs, r.steps)
	if err != nil {
		return false, outcome.InfraErr("git diff-tree", err)
	}
	if retry {
		r.s.Log.Info(why, "culprit", short(d.Culprit))
	}
	return retry, nil
}

// cheaper, in a search over kernels, may trade the best split for one
// that costs less to build from what the build dir holds: on a line of
// kernels the one that makes the whole search's expected seconds least
// (plan), elsewhere one almost as even that recompiles much less.
func (r *run) cheaper(ctx context.Context, d search.Decision) search.Decision {
	f, ok := r.strategy.(*fast)
	if !ok {
		return d
	}
	if choice, expect, mid, ok := f.plan(r.obs); ok {
		weight := f.recompiles(ctx, r.repo, choice)
		if choice != d.Next {
			r.s.Log.Info("a split less even, cheaper to build: the search's expected cost is least from it", "commit", short(choice),
				"expected_recompiles", min(weight, f.targets()), "expected_cost_steps", round1(expect), "from_the_midpoint", round1(mid), "instead_of", short(d.Next))
			d.Next = choice
		} else {
			r.s.Log.Info("next", "commit", short(choice), "expected_recompiles", min(weight, f.targets()), "expected_cost_steps", round1(expect))
		}
		return d
	}
	choice, weight, instead, targets := f.cheaper(ctx, r.repo, r.obs, d.Next)
	switch {
	case choice != d.Next:
		r.s.Log.Info("a split almost as even, cheaper to build", "commit", short(choice), "expected_recompiles", min(weight, targets),
			"weight", weight, "instead_of", short(d.Next), "its_weight", instead)
		d.Next = choice
	case weight >= 0:
		r.s.Log.Info("next", "commit", short(choice), "expected_recompiles", min(weight, targets), "weight", weight)
	}
	return d
}

// searchStep tests the commit the search chose.
func (r *run) searchStep(ctx context.Context, d search.Decision) (*Result, error) {
	at := stepAt{kind: journal.KindSearch, commit: d.Next, no: r.done + 1, est: r.done + 1 + d.StepsLeft, runs: d.Runs, remaining: d.Remaining}
	st, out, err := r.evaluate(ctx, at)
	if err != nil {
		return r.fail(ctx, err)
	}
	if out.Abort != "" {
		return r.end(outcome.RunAborted, "", nil, out.Abort)
	}
	if st.Flaky && !r.p.bayes() && !r.warned {
		r.warned = true // once a run: the report lists every step's evidence
		r.s.Log.Warn("this test looks flaky: the same commit gave both results; the Bayesian strategy (--strategy bayes) is made for that",
			"commit", short(st.Commit))
	}
	r.replay(st)
	return r.buildsFailing()
}

// buildsFailing stops a kernel run whose last search steps all failed to
// build: commits far apart in history that all fail say the toolchain or
// the config is at fault, not the commits, and going on would skip them
// all and end ambiguous.
func (r *run) buildsFailing() (*Result, error) {
	n := r.p.MaxBuildFailures
	if n <= 0 {
		return nil, nil
	}
	var last []journal.Step
	for i := len(r.steps) - 1; i >= 0 && len(last) < n; i-- {
		if st := r.steps[i]; st.Kind == journal.KindSearch && st.State == journal.StateDone {
			last = append(last, st)
		}
	}
	if len(last) < n {
		return nil, nil
	}
	for _, st := range last {
		if st.Verdict != "skip" || st.Build == nil || st.Evidence.Kernel != "" {
			return nil, nil
		}
	}
	return r.end(outcome.RunAborted, "", nil, fmt.Sprintf(
		"the last %d kernels did not build (the latest: %s; log %s): commits that far apart failing alike point at the toolchain or the config, not the commits. "+
			"For an older kernel try --toolchain auto (a toolchain of its era); see the build logs; --max-build-failures 0 goes on regardless",
		n, last[0].Reason, last[0].Evidence.BuildLog))
}

// commandCheck is git bisect run's check of a first step that exits 126 or
// 127 (command not found, not executable): the same code on the good
// commit means the command is broken, not the commit, and the run stops.
// It is a journaled step of its own, so a resumed run reads its result,
// or runs it again if it was cut short, exactly as an uninterrupted run.
func (r *run) commandCheck(ctx context.Context) (*Result, error) {
	if r.checked {
		return nil, nil
	}
	first, ok := r.firstDone(journal.KindSearch)
	if !ok {
		return nil, nil
	}
	r.checked = true
	code := firstExit(first)
	if code != 126 && code != 127 {
		return nil, nil
	}
	st, ok := r.firstDone(journal.KindCheck)
	if !ok {
		var err error
		if st, _, err = r.evaluate(ctx, stepAt{kind: journal.KindCheck, commit: r.p.Good[0], runs: 1}); err != nil {
			return r.fail(ctx, err)
		}
		r.steps = append(r.steps, st)
	}
	if firstExit(st) == code {
		return r.end(outcome.RunAborted, "", nil, fmt.Sprintf(
			"the reproducer exits %d on the %s commit too: the command is not found or not executable (see %s)", code, r.p.TermOld, firstOutput(st)))
	}
	return nil, nil
}

// firstDone is the first finished step of a kind.
func (r *run) firstDone(kind string) (journal.Step, bool) {
	for _, st := range r.steps {
		if st.Kind == kind && st.State == journal.StateDone {
			return st, true
		}
	}
	return journal.Step{}, false
}

func firstExit(st journal.Step) int {
	if len(st.Attempts) == 0 {
		return -1
	}
	return st.Attempts[0].ExitCode
}

func firstOutput(st journal.Step) string {
	if len(st.Attempts) == 0 {
		return ""
	}
	return st.Attempts[0].Output
}

// checkEndpoints tests the bad and/or good endpoints (each once per run)
// and ends the run if one disagrees with what the user said about it.
func (r *run) checkEndpoints(ctx context.Context, bad, good bool) (*Result, error) {
	var pairs [][2]string
	if bad {
		pairs = append(pairs, [2]string{r.p.Bad, "bad"})
	}
	if good {
		for _, g := range r.p.Good {
			pairs = append(pairs, [2]string{g, "good"})
		}
	}
	for _, e := range pairs {
		if end, err := r.checkEndpoint(ctx, e[0], e[1]); end != nil || err != nil {
			return end, err
		}
	}
	return nil, nil
}

func (r *run) checkEndpoint(ctx context.Context, commit, want string) (*Result, error) {
	st, ok := r.endpoints[commit]
	if !ok {
		var out pipeline.Outcome
		var err error
		st, out, err = r.evaluate(ctx, stepAt{kind: journal.KindEndpoint, commit: commit})
		if err != nil {
			return r.fail(ctx, err)
		}
		if out.Abort != "" {
			return r.end(outcome.RunAborted, "", nil, out.Abort)
		}
		r.replay(st)
	}
	if code := firstExit(st); want == "good" && (code == 126 || code == 127) && r.p.Kernel == nil {
		return r.end(outcome.RunAborted, "", nil, fmt.Sprintf(
			"the reproducer exits %d on the %s commit %s: the command is not found or not executable (see %s)", code, r.p.TermOld, short(commit), firstOutput(st)))
	}
	if r.p.bayes() || st.Verdict == want || st.Verdict == "skip" {
		// Under the Bayesian strategy an endpoint's result is one more
		// observation, never a stop.
		return nil, nil
	}
	return r.end(outcome.EndpointMismatch, "", nil, r.mismatch(commit, want, st.Verdict))
}

func (r *run) mismatch(commit, want, got string) string {
	name := map[string]string{"good": r.p.TermOld, "bad": r.p.TermNew}
	if want == "good" {
		return fmt.Sprintf("%s commit %s tested %s: the change is older than your %s ref, or the test is wrong", name[want], short(commit), name[got], name[want])
	}
	return fmt.Sprintf("%s commit %s tested %s: the change is newer than your %s ref, or the test does not reproduce it", name[want], short(commit), name[got], name[want])
}

// inconsistent ends a run whose observations contradict each other.
func (r *run) inconsistent(err error) (*Result, error) {
	msg := err.Error()
	if errors.Is(err, search.ErrInconsistent) {
		msg += ": the test looks flaky; the Bayesian strategy (--strategy bayes) is made for that"
	}
	return r.end(outcome.RunAborted, "", nil, msg)
}

// conclude ends a search that is done.
func (r *run) conclude(ctx context.Context, d search.Decision) (*Result, error) {
	switch {
	case d.NoTestable && r.p.fast():
		return r.end(outcome.Ambiguous, "", d.Ambiguous, fmt.Sprintf(
			"every commit that can change the kernel tested %s, so the first %s commit builds the same kernel as a %s one: the test tells apart what the kernel does not (it reads $FIRSTBAD_COMMIT, or is flaky); run again with --strategy classic --retest-same-kernel, or --flaky",
			r.p.TermOld, r.p.TermNew, r.p.TermOld))
	case d.NoTestable:
		return r.end(outcome.Ambiguous, "", d.Ambiguous, fmt.Sprintf(
			"no testable commit left: every commit that touches %v tested %s, and the first %s commit is one that does not (git bisect: \"No testable commit found\")",
			r.p.Paths, r.p.TermOld, r.p.TermNew))
	case r.p.bayes():
		return r.bayesDone(ctx, d)
	case d.Culprit == "":
		return r.end(outcome.Ambiguous, "", d.Ambiguous,
			fmt.Sprintf("only skipped commits are left: the first %s commit is one of %d", r.p.TermNew, len(d.Ambiguous)))
	}
	if r.p.EndpointCheck == "lazy" || r.p.EndpointCheck == "bad" {
		// Spend a test on an endpoint only when the answer hinges on it:
		// all tested commits on one side.
		anyGood, anyBad := false, false
		for _, o := range r.obs {
			anyGood = anyGood || o.Verdict == outcome.Good
			anyBad = anyBad || o.Verdict == outcome.Bad
		}
		if !anyGood {
			if end, err := r.checkEndpoints(ctx, false, true); end != nil || err != nil {
				return end, err
			}
		}
		if !anyBad {
			if end, err := r.checkEndpoints(ctx, true, false); end != nil || err != nil {
				return end, err
			}
		}
	}
	return r.found(ctx, d.Culprit)
}

// end records how the run ended.
func (r *run) end(result, culprit string, cands []string, msg string) (*Result, error) {
	err := r.write(func() error { return r.j.SetOutcome(result, culprit, cands, msg) })
	if err != nil {
		return nil, outcome.InfraErr("journal", err)
	}
	return &Result{RunID: r.id, Outcome: result, Culprit: culprit, Candidates: cands, Message: msg}, nil
}

// fail ends a run that cannot go on now: interrupted, or stopped by the
// infrastructure (never a verdict; the run stays resumable).
func (r *run) fail(ctx context.Context, err error) (*Result, error) {
	if ctx.Err() != nil {
		if _, e := r.end(outcome.RunInterrupted, "", nil, "interrupted"); e != nil {
			return nil, e
		}
		return &Result{RunID: r.id, Outcome: outcome.RunInterrupted}, ErrInterrupted
	}
	msg := "infrastructure error: " + err.Error()
	if journal.IsFull(err) {
		msg = fmt.Sprintf("disk full (%s, %s): free space there, then continue with firstbad resume %s", r.j.Dir, journal.FreeSpace(r.j.Dir), r.id)
	}
	res, e := r.end(outcome.RunInterrupted, "", nil, msg)
	if e != nil {
		return nil, errors.Join(outcome.InfraErr("run "+r.id, err), e)
	}
	return res, outcome.InfraErr("run "+r.id, err)
}

// reserveBytes is room kept free beside the journal while a run goes on:
// when the disk fills, giving it back lets the journal record where the
// run stopped and why.
const reserveBytes = 2 << 20

// reserveRoom fills the run's reserve file and returns its path.
func reserveRoom(dir string) string {
	p := filepath.Join(dir, "reserve")
	if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		_ = f.Truncate(0)
		_, _ = f.Write(make([]byte, reserveBytes))
		f.Close()
	}
	return p
}

// write runs a journal write; when the disk is full it gives back the
// reserve, tries once more, and marks the run to stop.
func (r *run) write(fn func() error) error {
	err := fn()
	if err != nil && journal.IsFull(err) {
		r.full = err
		if os.Remove(filepath.Join(r.j.Dir, "reserve")) == nil {
			err = fn()
		}
	}
	return err
}
