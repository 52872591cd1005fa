// Package proc runs child processes in their own process group, so that a
// deadline, a Ctrl-C or an error kills the child and everything it started.
package proc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
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
			StopGroup(pgid, StopGrace)
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

// StopGrace is how long a stopped group may take to end on SIGTERM before
// it is killed.
const StopGrace = 5 * time.Second

// StopGroup ends a process group: SIGTERM first, so that make deletes the
// target it was writing (a half-written object with a fresh mtime would
// otherwise be linked by the next incremental build), then SIGKILL for
// whatever is left after grace.
func StopGroup(pgid int, grace time.Duration) {
	if pgid <= 0 {
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	for end := time.Now().Add(grace); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if !groupAlive(pgid) {
			return
		}
	}
	KillGroup(pgid)
	// SIGKILL is delivered at once but takes effect asynchronously; callers
	// go on to reuse what the group was using.
	for end := time.Now().Add(time.Second); groupAlive(pgid) && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
}

// groupAlive says whether a process of the group still runs (zombies,
// waiting for a parent to reap them, do not count).
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// KillGroup sends SIGKILL to a process group; a gone group is not an error.
func KillGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}
