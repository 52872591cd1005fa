package session

import (
	"context"
	"fmt"
	"strings"

	"github.com/firstbad/firstbad/internal/outcome"
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
		r.failProb = d.FailProb
		return r.found(ctx, d.Culprit)
	}
	return r.end(outcome.Ambiguous, "", d.Ambiguous, fmt.Sprintf(
		"only skipped commits are left: the first %s commit is one of %d (together %.3f likely)", p.TermNew, len(d.Ambiguous), d.Confidence))
}
