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
	case d.Culprit != "" && d.Misfit != nil:
		return r.end(outcome.NonMonotonic, "", []string{d.Culprit, d.Misfit.Commit}, misfitMsg(p, d.Culprit, d.Misfit))
	case d.Culprit != "":
		r.failProb = d.FailProb
		return r.found(ctx, d.Culprit)
	}
	return r.end(outcome.Ambiguous, "", d.Ambiguous, fmt.Sprintf(
		"only skipped commits are left: the first %s commit is one of %d (together %.3f likely)", p.TermNew, len(d.Ambiguous), d.Confidence))
}

// misfitMsg says why a Bayesian answer is not trusted: a commit whose runs
// the flaky-test model explains only with a tiny probability.
func misfitMsg(p Params, culprit string, m *search.Misfit) string {
	if m.Above {
		return fmt.Sprintf("the range does not look monotonic: %s, which descends from the most likely culprit %s, passed all %d of its runs, "+
			"which a test failing %.0f%% of runs on %s commits (as the other runs say) does with probability %.1g: "+
			"a later change may have made it %s again and a still later one %s again. "+
			"Next: firstbad run --good %s --bad %s ... (the change after %s); firstbad run --good %s --bad %s ... (is %s the first?)",
			short(m.Commit), short(culprit), m.Runs, 100*m.Rate, p.TermNew, m.P, p.TermOld, p.TermNew,
			short(m.Commit), short(p.Bad), short(m.Commit), short(p.Good[0]), short(culprit), short(culprit))
	}
	return fmt.Sprintf("the range does not look monotonic: %s, below the most likely culprit %s, failed all %d of its runs, "+
		"which false alarms at the rate the other runs say (%.2g) explain only with probability %.1g: "+
		"an earlier change may break it too. Next: firstbad run --good %s --bad %s ... (the earlier change)",
		short(m.Commit), short(culprit), m.Runs, m.Rate, m.P, short(p.Good[0]), short(m.Commit))
}
