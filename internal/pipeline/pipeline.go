// Package pipeline evaluates one commit: (later: build -> boot ->) test ->
// outcome. It turns what a reproducer did into verdicts, and keeps the
// infrastructure's failures apart from verdicts about the commit.
package pipeline

import (
	"context"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"
)

// Request asks for one commit to be evaluated.
type Request struct {
	Commit      string
	Step        int    // step number shown to the reproducer
	Repeat      int    // how many runs of the reproducer
	EvidenceDir string // where to keep outputs and logs
	// Stage, if set, is told when a stage starts (build, boot, test).
	Stage func(stage string)
	// Tested, if set, gives the runs of an earlier step that tested the
	// same kernel image (by its path in the artifact cache): a kernel
	// step takes them instead of booting it again.
	Tested func(kernel string) ([]Run, bool)
}

func (r Request) stage(s string) {
	if r.Stage != nil {
		r.Stage(s)
	}
}

// Run is one run of the reproducer.
type Run struct {
	Verdict  outcome.Verdict
	ExitCode int
	Duration time.Duration
	Reason   string
	Crash    string
	Output   string // path of the captured output
}

// Outcome is the evaluation of one commit. Stage times are nil for stages
// this pipeline does not have.
type Outcome struct {
	Runs  []Run
	Build *time.Duration
	Boot  *time.Duration
	// Abort is set when the reproducer asked to stop the whole bisect
	// (exit code 128 or more, as with git bisect run).
	Abort string
	// Evidence beyond each run's output.
	BuildLog   string
	ConsoleLog string
	Kernel     string   // the built image (kernel steps)
	Toolchain  string   // what built it: release or root, gcc, binutils
	GuestRoot  string   // what the test ran on, when not the initramfs
	BuildFixes []string // upstream fixes applied to the tree for the build
}

// Pipeline evaluates commits.
type Pipeline interface {
	Evaluate(ctx context.Context, req Request) (Outcome, error)
}

// ExitVerdict maps a reproducer's exit code as `git bisect run` does: 0 good
// (old), 125 skip, 1-127 bad (new), 128 and above abort. With invert (finding
// a fix with natural exit codes), 0 means new and 1-127 old.
func ExitVerdict(code int, invert bool) (v outcome.Verdict, abort bool) {
	switch {
	case code < 0 || code >= 128:
		return outcome.Skip, true
	case code == 125:
		return outcome.Skip, false
	case (code == 0) != invert:
		return outcome.Good, false
	default:
		return outcome.Bad, false
	}
}

// Combine folds the runs of a step as the classic strategy does: any bad
// run makes the step bad; else any good run makes it good; else skip. A
// step with both good and bad runs is flaky.
func Combine(runs []Run) (v outcome.Verdict, flaky bool) {
	var good, bad bool
	for _, r := range runs {
		switch r.Verdict {
		case outcome.Good:
			good = true
		case outcome.Bad:
			bad = true
		}
	}
	switch {
	case bad:
		return outcome.Bad, good
	case good:
		return outcome.Good, false
	}
	return outcome.Skip, false
}

// Seconds turns an optional stage time into optional seconds (JSON null
// when the stage did not happen).
func Seconds(d *time.Duration) *float64 {
	if d == nil {
		return nil
	}
	s := d.Seconds()
	return &s
}
