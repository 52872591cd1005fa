package session

import (
	"fmt"
	"strings"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
)

// signature is the failure a run is about, taken from its first step
// judged bad: a crash's title for a kernel run, or the test's exit code
// when it is not 1. A step that fails otherwise is not silently the same
// failure.
type signature struct {
	crash  string
	code   int
	seq    int // the step it came from
	commit string
	kind   string
}

// learn takes the signature from a finished step, if there is none yet,
// and reports whether it did.
func (s *signature) learn(st journal.Step) bool {
	if s.seq != 0 || st.State != journal.StateDone || st.Verdict != "bad" || st.Kind == journal.KindMark {
		return false
	}
	for _, a := range st.Attempts {
		if a.Verdict == "bad" {
			s.crash, s.seq, s.commit, s.kind = a.Crash, st.Seq, st.Commit, st.Kind
			if a.ExitCode > 1 && a.Crash == "" {
				s.code = a.ExitCode
			}
			return true
		}
	}
	return false
}

// String is the signature as the report shows it ("" for none).
func (s signature) String() string {
	switch {
	case s.crash != "":
		return fmt.Sprintf("crash %q", s.crash)
	case s.code != 0:
		return fmt.Sprintf("exit code %d", s.code)
	}
	return ""
}

// from says which step the signature came from ("" for none).
func (s signature) from(termNew string) string {
	switch {
	case s.String() == "":
		return ""
	case s.kind == journal.KindEndpoint:
		return fmt.Sprintf("the %s endpoint %s", termNew, short(s.commit))
	}
	return fmt.Sprintf("step %d (%s), the first %s one", s.seq, short(s.commit), termNew)
}

// apply holds a step's runs to the signature. On a kernel run a crash
// with another title is a skip ("another crash"), unless --any-crash or
// --crash-match (the user's own signature) says otherwise; a bad run with
// another exit code says so in its reason.
func (s signature) apply(p Params, out pipeline.Outcome) pipeline.Outcome {
	if s.seq == 0 {
		return out
	}
	mine := p.Kernel != nil && !p.Kernel.AnyCrash && p.Kernel.CrashMatch == "" && s.crash != ""
	runs := make([]pipeline.Run, len(out.Runs))
	for i, r := range out.Runs {
		switch {
		case r.Verdict != outcome.Bad:
		case mine && r.Crash != "" && r.Crash != s.crash:
			r.Verdict = outcome.Skip
			r.Reason = fmt.Sprintf("another crash: %s (this run is about %q; --any-crash counts any crash)", r.Crash, s.crash)
		case s.code != 0 && r.Crash == "" && r.ExitCode > 0 && r.ExitCode != s.code && !strings.Contains(r.Reason, "(not the exit code"):
			r.Reason += fmt.Sprintf(" (not the exit code %d of the run's first %s step)", s.code, p.TermNew)
		}
		runs[i] = r
	}
	out.Runs = runs
	return out
}
