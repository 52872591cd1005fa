// Package outcome says what things mean, in one place: the verdicts a step
// can give a commit, the failures that are not verdicts (the user's input,
// the infrastructure, the reproducer asking to stop, an interruption), how
// a run ended, and the one table that turns each of them into every
// command's exit code. Pipeline, session and cli share it; no error is ever
// recognized by its text.
package outcome

import (
	"context"
	"errors"
	"fmt"
)

// Verdict is what a test said about a commit, in old/new terms: Good is
// the old behaviour, Bad the new one, Skip "cannot tell" (it did not build
// or boot, or the test said 125).
type Verdict int

// Verdicts a step can give.
const (
	Good Verdict = iota
	Bad
	Skip
)

func (v Verdict) String() string {
	switch v {
	case Good:
		return "good"
	case Bad:
		return "bad"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// ParseVerdict reads "good", "bad" or "skip".
func ParseVerdict(s string) (Verdict, error) {
	switch s {
	case "good":
		return Good, nil
	case "bad":
		return Bad, nil
	case "skip":
		return Skip, nil
	}
	return 0, fmt.Errorf("unknown verdict %q", s)
}

// Kind is a failure that is not a verdict about a commit.
type Kind int

// Failure kinds. A kernel's own fault (it does not build or boot) is never
// one of these: it is a Skip verdict with a reason.
const (
	// Infra is the environment's fault (disk full, QEMU missing or dead,
	// a lost connection, an OOM-killed compiler): never a verdict; the
	// run stays resumable.
	Infra Kind = iota + 1
	// Input is the user's to fix (an unknown ref, a missing file, a bad
	// flag value): nothing was started.
	Input
	// Aborted is the reproducer asking to stop the bisect (exit 128 or
	// more), or a command that cannot run at all (126/127 at both ends).
	Aborted
	// Interrupted is Ctrl-C, SIGTERM or SIGQUIT.
	Interrupted
)

func (k Kind) String() string {
	switch k {
	case Infra:
		return "infrastructure error"
	case Input:
		return "input error"
	case Aborted:
		return "aborted"
	case Interrupted:
		return "interrupted"
	}
	return "error"
}

// Error is a failure of one kind, with the stage it happened in.
type Error struct {
	Kind  Kind
	Stage string // build, boot, checkout, journal...; "" if none
	Err   error
	// Retry says one more try may succeed (QEMU died for no kernel-side
	// reason, the connection to a VM host dropped).
	Retry bool
}

func (e *Error) Error() string {
	if e.Stage == "" {
		return e.Err.Error()
	}
	return e.Stage + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// InputErr is an input error with a message for the user.
func InputErr(format string, args ...any) error {
	return &Error{Kind: Input, Err: fmt.Errorf(format, args...)}
}

// InfraErr marks err as the environment's fault in stage. An error that
// already has a kind keeps it.
func InfraErr(stage string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Kind: Infra, Stage: stage, Err: err}
}

// Retryable is an infrastructure error worth one more try.
func Retryable(stage string, err error) error {
	return &Error{Kind: Infra, Stage: stage, Err: err, Retry: true}
}

// AbortErr is the reproducer (or the command itself) stopping the bisect.
func AbortErr(format string, args ...any) error {
	return &Error{Kind: Aborted, Err: fmt.Errorf(format, args...)}
}

// ErrInterrupted is a run stopped by a signal before it finished; the
// journal says what is left to do.
var ErrInterrupted = &Error{Kind: Interrupted, Err: errors.New("interrupted")}

// KindOf is err's kind: its own, Interrupted for a cancelled context, and
// Infra for anything else (an error nobody classified is not the user's
// and not a verdict).
func KindOf(err error) Kind {
	var e *Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e.Kind
	case errors.Is(err, context.Canceled):
		return Interrupted
	}
	return Infra
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// CanRetry reports whether err is a retryable infrastructure error.
func CanRetry(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == Infra && e.Retry
}

// IsInfra reports whether err is the environment's fault.
func IsInfra(err error) bool { return Is(err, Infra) }

// IsInput reports whether err is the user's to fix.
func IsInput(err error) bool { return Is(err, Input) }
