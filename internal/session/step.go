package session

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
)

// stepAt says which step to run: its kind and commit, its number and the
// estimated total (search steps, for the display), how many runs (0: the
// run's --repeat) and how many candidates were left when it was chosen.
type stepAt struct {
	kind, commit string
	no, est      int
	runs         int
	remaining    int
}

// evaluate runs one step through the pipeline and journals it: begun before
// the test starts, finished (with verdict and evidence) in one transaction.
func (r *run) evaluate(ctx context.Context, at stepAt) (journal.Step, pipeline.Outcome, error) {
	subject := ""
	if info, err := r.repo.Info(ctx, at.commit, false); err == nil {
		subject = info.Subject
	}
	st := journal.Step{Kind: at.kind, Commit: at.commit, Subject: subject, Remaining: at.remaining}
	seq, err := r.j.BeginStep(st)
	if err != nil {
		return st, pipeline.Outcome{}, outcome.InfraErr("journal", err)
	}
	st.Seq = seq
	started := time.Now()
	show := func(stage string, st journal.Step) {
		r.s.progress(Progress{RunID: r.id, Step: at.no, EstSteps: at.est, Commit: at.commit, Subject: subject, Stage: stage,
			Started: started, Verdict: st.Verdict, Reason: st.Reason, Kind: at.kind})
	}
	show("start", st)
	runs := at.runs
	if runs <= 0 {
		runs = r.p.Repeat
	}
	out, err := r.pipe.Evaluate(ctx, pipeline.Request{Commit: at.commit, Step: at.no, Repeat: runs,
		EvidenceDir: filepath.Join(r.j.Dir, "steps", strconv.Itoa(seq)),
		Stage:       func(stage string) { show(stage, st) }, Tested: r.tested(at.kind)})
	st.Duration = time.Since(started).Seconds()
	out = r.sig.apply(r.p, out)
	if err != nil {
		st.State, st.Verdict, st.Reason = failedState(ctx, err)
		// The step must be on record even if the context is gone.
		if e := r.write(func() error { return r.j.FinishStep(st) }); e != nil {
			r.s.Log.Error("journal", "err", e)
		}
		return st, out, err
	}
	st = withOutcome(st, out)
	if err := r.write(func() error { return r.j.FinishStep(st) }); err != nil {
		return st, out, outcome.InfraErr("journal", err)
	}
	show("done", st)
	return st, out, nil
}

// failedState is how a step that did not finish is recorded: never with a
// verdict.
func failedState(ctx context.Context, err error) (state, verdict, reason string) {
	switch {
	case ctx.Err() != nil:
		return journal.StateInterrupted, "error", "interrupted"
	case journal.IsFull(err):
		return journal.StateInterrupted, "error", "disk full: " + err.Error()
	}
	return journal.StateError, "error", err.Error()
}

// withOutcome fills a step from what the pipeline said: the combined
// verdict, each run, the times and the evidence.
func withOutcome(st journal.Step, out pipeline.Outcome) journal.Step {
	v, flaky := pipeline.Combine(out.Runs)
	st.State, st.Verdict, st.Flaky = journal.StateDone, v.String(), flaky
	var test float64
	for i, run := range out.Runs {
		test += run.Duration.Seconds()
		st.Attempts = append(st.Attempts, journal.Attempt{Verdict: run.Verdict.String(), ExitCode: run.ExitCode,
			Duration: run.Duration.Seconds(), Crash: run.Crash, Reason: run.Reason, Output: run.Output})
		if i == 0 || run.Verdict == v {
			st.Reason, st.Crash = run.Reason, run.Crash
		}
		if st.Evidence.TestOutput == "" || run.Verdict == v {
			st.Evidence.TestOutput = run.Output
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
	st.Evidence.Toolchain, st.Evidence.BuildFixes, st.Evidence.GuestRoot = out.Toolchain, out.BuildFixes, out.GuestRoot
	if out.Abort != "" {
		st.State, st.Verdict, st.Reason = journal.StateError, "error", out.Abort
	}
	return st
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
