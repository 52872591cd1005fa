// Package lock provides advisory file locks (flock) that record their holder.
// The kernel drops an flock when its holder dies, so a lock left by a killed
// process never blocks the next one; the pid written inside is only there to
// name the holder in messages.
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HeldError says who holds a lock that could not be taken.
type HeldError struct {
	Path string
	PID  int
}

func (e *HeldError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is locked by another firstbad (pid %d)", e.Path, e.PID)
	}
	return fmt.Sprintf("%s is locked by another firstbad", e.Path)
}

// Lock is a held lock; Release gives it back.
type Lock struct {
	f    *os.File
	Path string
}

// TryAcquire takes the lock at path without waiting, or returns *HeldError.
func TryAcquire(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &HeldError{Path: path, PID: Holder(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, Path: path}, nil
}

// Acquire waits for the lock until ctx ends, calling waiting once (if not
// nil) when it first finds the lock held.
func Acquire(ctx context.Context, path string, waiting func(*HeldError)) (*Lock, error) {
	told := false
	for {
		l, err := TryAcquire(path)
		var held *HeldError
		if !errors.As(err, &held) {
			return l, err
		}
		if !told && waiting != nil {
			waiting(held)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w while waiting: %v", held, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Holder returns the pid recorded in a lock file, or 0.
func Holder(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Release drops the lock. The file stays: removing it would race with a
// process that opened it and is about to lock it.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}

// Held reports whether a live process holds the lock at path, and its pid.
// It opens the file read-only, so it works in a state dir it cannot write.
func Held(path string) (bool, int) {
	f, err := os.Open(path)
	if err != nil {
		return false, 0
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK), Holder(path)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, 0
}
