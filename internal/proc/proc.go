// Package proc runs child processes in their own process group, so that a
// deadline, a Ctrl-C or an error kills the child and everything it started.
package proc

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// Result is how a child ended.
type Result struct {
	ExitCode int // exit status, or 128+signal when killed by a signal
	Signal   syscall.Signal
	TimedOut bool // the per-run deadline killed it
	Duration time.Duration
}

// Run starts cmd in a new process group and waits for it. A timeout (if >0)
// or the end of ctx kills the whole group; so does the child's own exit, so
// that nothing it left in the background outlives it. The error is only for
// failures to start or to wait (the child's exit status is in Result); when
// ctx ended, it is ctx's error.
func Run(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) (Result, error) {
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	pgid := cmd.Process.Pid
	defer Register(pgid)()
	done := make(chan struct{})
	go func() {
		select {
		case <-runCtx.Done():
			KillGroup(pgid)
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	KillGroup(pgid)
	res := Result{Duration: time.Since(start)}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if runCtx.Err() != nil {
		res.TimedOut = true
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
			res.ExitCode = 128 + int(ws.Signal())
		} else {
			res.ExitCode = ee.ExitCode()
		}
	default:
		return res, err
	}
	return res, nil
}

// KillGroup sends SIGKILL to a process group; a gone group is not an error.
func KillGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}
