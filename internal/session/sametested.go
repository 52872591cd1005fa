package session

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/report"
)

// tested lets a search or endpoint step take the verdict of an earlier step
// that tested the same kernel (a commit whose changes the build never read
// gets the earlier build's artifact, kbuild's same-kernel reuse; or the two
// images are byte-identical): the test sees nothing of a commit but its
// kernel, so a deterministic test cannot tell them apart, and the boot is
// saved. Not under the Bayesian strategy (a second boot is a second,
// independent observation), not once the run has seen the test flake (a
// step whose runs disagreed, a commit tested both ways), not for checks
// (confirmation, revert, retest: their point is a new boot), not from a
// commit marked by hand, and not with --retest-same-kernel.
func (r *run) tested(kind string) func(kernel string) ([]pipeline.Run, bool) {
	if r.p.Kernel == nil || r.p.RetestSameKernel || r.p.bayes() || (kind != journal.KindSearch && kind != journal.KindEndpoint) {
		return nil
	}
	marked, verdict := map[string]bool{}, map[string]string{}
	for _, st := range r.steps {
		if st.Kind == journal.KindMark {
			marked[st.Commit] = true
			continue
		}
		if st.State != journal.StateDone || (st.Verdict != "good" && st.Verdict != "bad") {
			continue
		}
		if v, seen := verdict[st.Commit]; st.Flaky || (seen && v != st.Verdict) {
			return nil
		}
		verdict[st.Commit] = st.Verdict
	}
	return func(kernel string) ([]pipeline.Run, bool) {
		for _, st := range r.steps {
			if !sameKernel(st.Evidence.Kernel, kernel) || st.State != journal.StateDone || marked[st.Commit] ||
				(st.Kind != journal.KindSearch && st.Kind != journal.KindEndpoint) || (st.Verdict != "good" && st.Verdict != "bad") {
				continue
			}
			r.s.Log.Info("same kernel as an earlier step: its verdict, without a boot", "commit", short(st.Commit), "step", st.Seq, "verdict", st.Verdict)
			return reusedRuns(st), true
		}
		return nil, false
	}
}

// sameKernel says whether two built kernels are the same: one artifact, or
// byte-identical images (and modules, for a machine's) — kernel builds are
// reproducible, so two commits built apart can be the same kernel too.
func sameKernel(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	ma, mb := filepath.Join(filepath.Dir(a), "modules.tar"), filepath.Join(filepath.Dir(b), "modules.tar")
	_, ea := os.Stat(ma)
	_, eb := os.Stat(mb)
	return report.SameContent(a, b) && (ea != nil && eb != nil || report.SameContent(ma, mb))
}

// reusedRuns are an earlier step's runs, each saying where it came from.
func reusedRuns(st journal.Step) []pipeline.Run {
	runs := make([]pipeline.Run, 0, len(st.Attempts))
	for _, a := range st.Attempts {
		v, err := outcome.ParseVerdict(a.Verdict)
		if err != nil {
			v = outcome.Skip
		}
		runs = append(runs, pipeline.Run{Verdict: v, ExitCode: a.ExitCode, Crash: a.Crash, Output: a.Output,
			Reason: fmt.Sprintf("same kernel as %s, tested at step %d (no boot): %s", short(st.Commit), st.Seq, a.Reason)})
	}
	return runs
}
