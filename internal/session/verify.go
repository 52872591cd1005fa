package session

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/report"
)

// found checks the culprit the search named before the run says it is
// found: the confirmation retests it and its parent, the revert check
// undoes it on the tip, and the flags say what makes it implausible. Each
// check is a journaled step, reused when a resumed run comes back here.
func (r *run) found(ctx context.Context, culprit string) (*Result, error) {
	var notes []string
	if r.p.Confirm {
		c, err := r.confirm(ctx, culprit)
		if err != nil {
			return r.checkFailed(ctx, err)
		}
		if c.end != nil {
			return r.end(c.end.outcome, c.end.culprit, c.end.cands, c.end.msg)
		}
		notes = append(notes, c.notes...)
	}
	if r.p.RevertCheck {
		if err := r.revertCheck(ctx, culprit); err != nil {
			return r.checkFailed(ctx, err)
		}
		if st, ok := r.doneStep(journal.KindRevert, culprit); ok {
			notes = append(notes, st.Reason) // not made: why
		}
	}
	flags := culpritFlags(ctx, r.repo, r.p, culprit, r.steps)
	for _, f := range flags {
		notes = append(notes, f.Text)
	}
	if len(flags) > 0 && !r.p.AcceptSuspect {
		notes = append(notes, "the culprit is flagged: check it (see the report), or pass --accept-suspect to call such a culprit found")
		return r.end(outcome.Suspect, culprit, []string{culprit}, strings.Join(notes, "; "))
	}
	return r.end(outcome.Found, culprit, []string{culprit}, strings.Join(notes, "; "))
}

// checkStep is a step of a check: done before (a resumed run) or run now
// (runs: 0 for the run's --repeat).
func (r *run) checkStep(ctx context.Context, kind, commit string, runs int) (journal.Step, error) {
	if st, ok := r.doneStep(kind, commit); ok {
		return st, nil
	}
	st, out, err := r.evaluate(ctx, stepAt{kind: kind, commit: commit, runs: runs})
	if err == nil {
		r.replay(st)
	}
	if err == nil && out.Abort != "" {
		err = outcome.AbortErr("%s", out.Abort)
	}
	return st, err
}

// checkFailed ends a run whose check could not finish: the reproducer
// asked to stop (aborted, as on a search step), or the run cannot go on.
func (r *run) checkFailed(ctx context.Context, err error) (*Result, error) {
	if outcome.Is(err, outcome.Aborted) {
		return r.end(outcome.RunAborted, "", nil, err.Error())
	}
	return r.fail(ctx, err)
}

// doneStep is a finished step of a kind on a commit.
func (r *run) doneStep(kind, commit string) (journal.Step, bool) {
	for _, st := range r.steps {
		if st.Kind == kind && st.Commit == commit && st.State == journal.StateDone {
			return st, true
		}
	}
	return journal.Step{}, false
}

// ending is how a check ends a run instead of "found".
type ending struct {
	outcome, culprit, msg string
	cands                 []string
}

// confirmation is what retesting the culprit and its parent said.
type confirmation struct {
	notes []string
	end   *ending // the retests contradict the search
}

// confirm retests the culprit (expected bad) and its first parent
// (expected good), from the artifact cache for kernels. In classic mode a
// retest that contradicts the search ends the run: the same commit both
// ways is a flaky test (suspect); a parent that is bad below a commit that
// tested good is a non-monotonic range.
func (r *run) confirm(ctx context.Context, culprit string) (confirmation, error) {
	var c confirmation
	parents, err := r.repo.Run(ctx, "show", "-s", "--format=%P", "--end-of-options", culprit)
	if err != nil {
		return c, outcome.InfraErr("git", err)
	}
	parent, _, _ := strings.Cut(strings.TrimSpace(string(parents)), " ")
	if mark, ok := r.doneStep(journal.KindMark, culprit); ok {
		// A human's verdict stands: the test is what it overrode.
		c.notes = append(c.notes, fmt.Sprintf("the culprit's verdict is a human's (%s), not retested", mark.Reason))
		return c, nil
	}
	cst, err := r.checkStep(ctx, journal.KindConfirm, culprit, 0)
	if err != nil {
		return c, err
	}
	if cst.Verdict == "good" && !r.p.bayes() {
		c.end = r.flakyEnd(culprit, "bad", "good")
		return c, nil
	}
	if cst.Verdict != "bad" {
		c.notes = append(c.notes, fmt.Sprintf("the culprit tested %s on the confirmation run (%s)", r.term(cst.Verdict), cst.Reason))
	}
	if _, ok := r.doneStep(journal.KindMark, parent); parent == "" || ok {
		return c, nil
	}
	pst, err := r.checkStep(ctx, journal.KindConfirm, parent, 0)
	if err != nil {
		return c, err
	}
	if pst.Verdict == "bad" && !r.p.bayes() {
		c.end = r.parentBad(ctx, culprit, parent)
		return c, nil
	}
	if pst.Verdict != "good" {
		c.notes = append(c.notes, fmt.Sprintf("the culprit's parent tested %s on the confirmation run (%s)", r.term(pst.Verdict), pst.Reason))
	}
	return c, nil
}

// term names a verdict in the run's terms.
func (r *run) term(verdict string) string {
	return report.Terms{Old: r.p.TermOld, New: r.p.TermNew}.Of(verdict)
}

// flakyEnd is a retest that contradicts what the search saw of the same
// commit (or the user said of an endpoint): the test is flaky.
func (r *run) flakyEnd(commit, before, now string) *ending {
	return &ending{outcome: outcome.Suspect, culprit: "", cands: []string{commit}, msg: fmt.Sprintf(
		"%s was %s in the search (or as your endpoint) but tested %s on the confirmation run: the test is flaky, and a classic bisect of a flaky test names a wrong culprit; run again with --flaky (the Bayesian strategy)",
		short(commit), r.term(before), r.term(now))}
}

// parentBad ends a run whose culprit's parent tested bad. If the search
// saw it good, the test is flaky; otherwise a commit that descends from the
// parent tested good (a search step, or the good endpoint): bad, good and
// bad again is two changes, or a flaky test.
func (r *run) parentBad(ctx context.Context, culprit, parent string) *ending {
	var goods []string
	for _, st := range r.steps {
		if st.Verdict == "good" && st.State == journal.StateDone && st.Kind != journal.KindConfirm && st.Kind != journal.KindRevert {
			goods = append(goods, st.Commit)
		}
	}
	if slices.Contains(goods, parent) {
		return r.flakyEnd(parent, "good", "bad")
	}
	goods = append(goods, r.p.Good...)
	var above string
	for _, g := range goods {
		if ok, err := r.repo.IsAncestor(ctx, parent, g); err == nil && ok {
			above = g
			break
		}
	}
	if above == "" {
		above = r.p.Good[0]
	}
	return &ending{outcome: outcome.NonMonotonic, cands: []string{parent, above, culprit}, msg: fmt.Sprintf(
		"the range is not monotonic: %s (the parent of %s, the search's answer) tests %s, but %s, which descends from it, was %s: two changes (%s, then %s, then %s again) or a flaky test. "+
			"Next: firstbad run --good %s --bad %s ... finds the later change (%s, if the test is right); firstbad run --good %s --bad %s ... the earlier one; --flaky if the test is flaky",
		short(parent), short(culprit), r.p.TermNew, short(above), r.p.TermOld, r.p.TermNew, r.p.TermOld, r.p.TermNew,
		short(above), short(r.p.Bad), short(culprit), short(r.p.Good[0]), short(parent))}
}

// revertCheck reverts the culprit on the tip (the bad commit, or
// --revert-on) in firstbad's clone and tests that commit. A conflict or a
// tip without the culprit is recorded as a step that did not test.
func (r *run) revertCheck(ctx context.Context, culprit string) error {
	onto := r.revertTip()
	ref := "refs/firstbad/revert/" + short(culprit) + "-" + short(onto)
	if sha, err := r.repo.ResolveCommit(ctx, ref); err == nil {
		return r.testRevert(ctx, sha)
	}
	if _, ok := r.doneStep(journal.KindRevert, culprit); ok {
		return nil // recorded as not made (a conflict)
	}
	sha, conflicts, err := r.repo.Revert(ctx, onto, culprit, ref)
	switch {
	case errors.Is(err, git.ErrNotContained):
		return r.record(journal.Step{Kind: journal.KindRevert, Commit: culprit, Verdict: "skip",
			Reason: fmt.Sprintf("no revert check: %s is not in %s", short(culprit), short(onto))})
	case err != nil:
		return outcome.InfraErr("revert", err)
	case len(conflicts) > 0:
		return r.record(journal.Step{Kind: journal.KindRevert, Commit: culprit, Verdict: "skip",
			Reason: fmt.Sprintf("the revert of %s on %s conflicts (%s)", short(culprit), short(onto), strings.Join(conflicts, ", "))})
	}
	return r.testRevert(ctx, sha)
}

// testRevert tests the revert commit: with the run's --repeat, or, on a
// flaky test, with enough runs that a still-bad tip would fail at least
// once 99 times in 100 (at the estimated p).
func (r *run) testRevert(ctx context.Context, sha string) error {
	runs := 0
	if p := r.failProb; r.p.bayes() && p > 0 && p < 1 {
		runs = min(64, max(1, int(math.Ceil(math.Log(0.01)/math.Log(1-p)))))
	}
	_, err := r.checkStep(ctx, journal.KindRevert, sha, runs)
	return err
}

// revertTip is where the revert check runs.
func (r *run) revertTip() string {
	if r.p.RevertOn != "" {
		return r.p.RevertOn
	}
	return r.p.Bad
}

// record journals a step that ran nothing (a check that could not be
// made), with its reason.
func (r *run) record(st journal.Step) error {
	seq, err := r.j.BeginStep(st)
	if err != nil {
		return outcome.InfraErr("journal", err)
	}
	st.Seq, st.State = seq, journal.StateDone
	if err := r.write(func() error { return r.j.FinishStep(st) }); err != nil {
		return outcome.InfraErr("journal", err)
	}
	r.replay(st)
	return nil
}
