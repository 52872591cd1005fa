package outcome

// How a run ended (its journal's outcome).
const (
	Running          = "running"
	Found            = "found"
	Ambiguous        = "ambiguous"
	EndpointMismatch = "endpoint-mismatch"
	BudgetExhausted  = "budget-exhausted"
	// Suspect is a culprit the search found that its checks do not back:
	// a flag (a merge, documentation only, ...), a confirmation that
	// disagrees, a revert that does not help.
	Suspect = "suspect"
	// NonMonotonic is a range that went bad, good and bad again (two
	// changes, or a flaky test): the commits that disagree are named.
	NonMonotonic   = "non-monotonic"
	RunAborted     = "aborted"
	RunInterrupted = "interrupted"
	// RunError is the JSON outcome of a command that failed before a run
	// existed (an input error, say).
	RunError = "error"
)

// Command is a family of commands sharing exit codes.
type Command int

const (
	// RunCommands are run, resume, status, list, log, report, gc, build.
	RunCommands Command = iota
	// StepCommands are test and boot: git bisect run's codes, so that
	// `git bisect run firstbad test ...` works.
	StepCommands
)

// Exit codes of the run commands.
const (
	ExitOK          = 0
	ExitNoCulprit   = 1
	ExitUsage       = 2
	ExitInfra       = 3
	ExitInterrupted = 130
)

// Exit codes of the step commands (git bisect run's).
const (
	StepGood  = 0
	StepBad   = 1
	StepSkip  = 125
	StepInput = 128
	StepInfra = 129
)

// ErrorExit is the exit code of a failed command.
func ErrorExit(c Command, err error) int {
	k := KindOf(err)
	if c == StepCommands {
		switch k {
		case Input, Aborted:
			return StepInput
		case Interrupted:
			return ExitInterrupted
		}
		return StepInfra
	}
	switch k {
	case Input:
		return ExitUsage
	case Aborted:
		return ExitNoCulprit
	case Interrupted:
		return ExitInterrupted
	}
	return ExitInfra
}

// RunExit is the exit code of a run that ended with outcome (a journal
// outcome string).
func RunExit(outcome string) int {
	switch outcome {
	case Found, Running:
		return ExitOK
	case RunInterrupted:
		return ExitInterrupted
	case RunError:
		return ExitInfra
	}
	return ExitNoCulprit
}

// VerdictExit is a step command's exit code for a verdict.
func VerdictExit(v Verdict) int {
	switch v {
	case Good:
		return StepGood
	case Bad:
		return StepBad
	}
	return StepSkip
}
