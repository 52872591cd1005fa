package session

import (
	"context"
	"fmt"
	"strings"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/report"
	"github.com/firstbad/firstbad/internal/search"
)

// bayesDone ends a Bayesian run with what the posterior says.
func (r *run) bayesDone(ctx context.Context, d search.Decision) (*Result, error) {
	p := r.p
	likely := make([]string, 0, len(d.Posterior))
	var cands []string
	for _, c := range d.Posterior {
		likely = append(likely, fmt.Sprintf("%s (%.3f)", short(c.Commit), c.P))
		cands = append(cands, c.Commit)
	}
	switch {
	case d.Older != "":
		return r.end(outcome.EndpointMismatch, "", nil, fmt.Sprintf(
			"%s commit %s tests %s (posterior %.3f): the change is older than your %s ref, or the test is wrong",
			p.TermOld, short(d.Older), p.TermNew, d.Confidence, p.TermOld))
	case d.Exhausted != "":
		why := d.Exhausted
		if strings.Contains(why, "budget") {
			why += " (raise it with --max-runs)"
		}
		return r.end(outcome.BudgetExhausted, "", cands, fmt.Sprintf(
			"stopped short of confidence %.2f: %s; most likely first %s commits: %s",
			p.Confidence, why, p.TermNew, strings.Join(likely, ", ")))
	case d.Culprit != "":
		return r.found(ctx, d.Culprit)
	}
	return r.end(outcome.Ambiguous, "", d.Ambiguous, fmt.Sprintf(
		"only skipped commits are left: the first %s commit is one of %d (together %.3f likely)", p.TermNew, len(d.Ambiguous), d.Confidence))
}

// found ends a run with its culprit, confirmed first when asked.
func (r *run) found(ctx context.Context, culprit string) (*Result, error) {
	msg := ""
	if r.p.Confirm {
		var err error
		if msg, err = r.confirm(ctx, culprit); err != nil {
			return r.fail(ctx, err)
		}
	}
	return r.end(outcome.Found, culprit, []string{culprit}, msg)
}

// confirm retests the culprit (expected bad) and its first parent (expected
// good), from the artifact cache for kernels, and says what it found.
func (r *run) confirm(ctx context.Context, culprit string) (string, error) {
	parents, err := r.repo.Run(ctx, "show", "-s", "--format=%P", "--end-of-options", culprit)
	if err != nil {
		return "", outcome.InfraErr("git", err)
	}
	parent, _, _ := strings.Cut(strings.TrimSpace(string(parents)), " ")
	c, cout, err := r.evaluate(ctx, stepAt{kind: journal.KindConfirm, commit: culprit})
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
	pst, pout, err := r.evaluate(ctx, stepAt{kind: journal.KindConfirm, commit: parent})
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
