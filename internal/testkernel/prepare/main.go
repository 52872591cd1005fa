// Command prepare makes the shared test kernel (its history and its build)
// and the test machine's disk image before `go test` runs, so that the
// test binary's timeout bounds tests only. test.sh runs it; it is
// idempotent and cheap once both exist. The two are made side by side: the
// image is mostly downloads and package unpacking, the kernel compiles.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/firstbad/firstbad/internal/testkernel"
	"github.com/firstbad/firstbad/internal/testmachine"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	logger := func(what string) func(string, ...any) {
		return func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%s [%s]: %s\n", what, time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
		}
	}
	var wg sync.WaitGroup
	var kerr, merr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		var k *testkernel.Kernel
		if k, kerr = testkernel.Prepare(ctx, logger("test kernel")); kerr == nil {
			logger("test kernel")("ready: %s", k.Image)
		}
	}()
	go func() {
		defer wg.Done()
		var img string
		if img, merr = testmachine.Image(ctx, logger("test machine")); merr == nil {
			logger("test machine")("ready: %s", img)
		}
	}()
	wg.Wait()
	failed := report(logger("test kernel"), kerr, "the real-kernel tests")
	if report(logger("test machine"), merr, "the machine tests") || failed {
		os.Exit(1)
	}
}

// report logs err; a skip is no failure.
func report(logf func(string, ...any), err error, tests string) (failed bool) {
	var skip *testkernel.SkipError
	switch {
	case errors.As(err, &skip):
		logf("not available, %s will skip: %v", tests, skip)
	case err != nil:
		logf("%v", err)
		return true
	}
	return false
}
