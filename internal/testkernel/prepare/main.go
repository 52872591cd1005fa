// Command prepare makes the shared test kernel (its history and its build)
// before `go test` runs, so that the test binary's timeout bounds tests
// only. test.sh runs it; it is idempotent and cheap once the kernel exists.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/firstbad/firstbad/internal/testkernel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "test kernel [%s]: %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	k, err := testkernel.Prepare(ctx, logf)
	var skip *testkernel.SkipError
	switch {
	case errors.As(err, &skip):
		logf("not available, the real-kernel tests will skip: %v", skip)
	case err != nil:
		logf("%v", err)
		os.Exit(1)
	default:
		logf("ready: %s", k.Image)
	}
}
