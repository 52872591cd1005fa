// Command prepare makes the shared test kernel (its history and its build)
// and the test machine's disk image before `go test` runs, so that the
// test binary's timeout bounds tests only; after the image, the guest
// roots the --rootfs tests use (a Debian root, the virtiofsd root). test.sh
// runs it; it is idempotent and cheap once all exist. The kernel is made
// beside the rest: the image and roots are mostly downloads and package
// unpacking, the kernel compiles.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/rootfs"
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
		guestRoots(ctx, logger("guest roots"))
	}()
	wg.Wait()
	failed := report(logger("test kernel"), kerr, "the real-kernel tests")
	if report(logger("test machine"), merr, "the machine tests") || failed {
		os.Exit(1)
	}
}

// guestRoots makes the roots the --rootfs tests share with their guests,
// in the test kernel's cache, where the tests look: a failure here is only
// logged (the tests make them again, or fail with the reason).
func guestRoots(ctx context.Context, logf func(string, ...any)) {
	start := time.Now()
	spec := rootfs.Spec{Kind: "debian", Release: "bookworm", Packages: []string{"python3-minimal", "systemd-sysv"}, Via: rootfs.ViaVirtiofs}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if _, err := rootfs.Prepare(ctx, spec, cachedir.Dir(filepath.Join(testkernel.Root(), "cache")), log); err != nil {
		logf("%v", err)
		return
	}
	logf("ready in %s: %s and the virtiofsd root", time.Since(start).Round(time.Second), spec)
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
