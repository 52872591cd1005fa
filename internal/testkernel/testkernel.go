// Package testkernel provides the one real kernel that every real-kernel
// test shares: built once per machine (behind a file lock, with ccache and
// firstbad's own artifact cache) from a real kernel history, with the union
// of the options all tests need. Tests that cannot have it skip with the
// reason.
package testkernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/lock"
)

// Root holds the test history, the shared cache dir and the lock. It
// survives between test runs on one machine, so only the first run pays.
func Root() string {
	if d := os.Getenv("FIRSTBAD_TEST_ROOT"); d != "" {
		return d
	}
	return "/var/tmp/firstbad-test"
}

// Fragment is the union of the options the real-kernel tests need.
// The rest boots a test machine too (Debian 12 with systemd from a
// virtio disk, through its own initramfs), with one module (loop) to show
// that modules install; built in, none of it changes a VM's boot. The
// last lines are --rootfs host's and debian:'s options (kbuild's
// rootfs-host fragment, over 9p, and rootfs-virtiofs); --rootfs image's
// (rootfs-image: the block layer, virtio-blk, ext4, overlayfs) and --init
// system's (init-system) are among the machine's. So the tests of every
// --rootfs mode boot this same kernel, and with virtio-mmio (the last two
// lines: --machine microvm's own, its PCI and ACPI unused there) the
// microvm tests too.
const Fragment = `CONFIG_SCHED_AUTOGROUP=y
CONFIG_PROC_SYSCTL=y
CONFIG_MAGIC_SYSRQ=y
CONFIG_MODULES=y
CONFIG_BLOCK=y
CONFIG_BLK_DEV=y
CONFIG_BLK_DEV_LOOP=m
CONFIG_VIRTIO_BLK=y
CONFIG_EXT4_FS=y
CONFIG_RD_GZIP=y
CONFIG_RD_ZSTD=y
CONFIG_CGROUPS=y
CONFIG_INOTIFY_USER=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_FHANDLE=y
CONFIG_FILE_LOCKING=y
CONFIG_POSIX_TIMERS=y
CONFIG_SYSVIPC=y
CONFIG_NAMESPACES=y
CONFIG_UNIX98_PTYS=y
CONFIG_KEXEC=y
CONFIG_NETWORK_FILESYSTEMS=y
CONFIG_NET_9P=y
CONFIG_NET_9P_VIRTIO=y
CONFIG_9P_FS=y
CONFIG_OVERLAY_FS=y
CONFIG_FUSE_FS=y
CONFIG_VIRTIO_FS=y
CONFIG_VIRTIO_MMIO=y
CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y
`

// Kernel is the shared test kernel.
type Kernel struct {
	Repo     string // the kernel history (tags base and tip)
	CacheDir string // firstbad cache dir with the built kernel
	Image    string // bzImage of tip
	Fragment string // path of the fragment file
}

func projectRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Get returns the test kernel, building what is missing. It skips the test
// when the machine cannot run real kernels, saying why. test.sh prepares the
// kernel before `go test` starts (Prepare), so that go test's timeout bounds
// the tests only; Get then finds it in the artifact cache.
func Get(t testing.TB) *Kernel {
	t.Helper()
	if os.Getenv("FIRSTBAD_SKIP_KERNEL_TESTS") != "" {
		t.Skip("FIRSTBAD_SKIP_KERNEL_TESTS is set")
	}
	if testing.Short() {
		t.Skip("real-kernel test: not in -short mode")
	}
	k, err := Prepare(context.Background(), func(format string, args ...any) { t.Logf(format, args...) })
	var skip *SkipError
	if errors.As(err, &skip) {
		t.Skip(skip.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// SkipError says why this machine cannot have the test kernel.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return e.Reason }

// Prepare makes the kernel history and builds the test kernel if they are
// missing, logging progress with logf.
func Prepare(ctx context.Context, logf func(format string, args ...any)) (*Kernel, error) {
	for _, tool := range []string{"qemu-system-x86_64", "make", "gcc", "flex", "bison"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, &SkipError{fmt.Sprintf("real-kernel test needs %s (run ./setup.sh)", tool)}
		}
	}
	root := Root()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, &SkipError{fmt.Sprintf("cannot create %s: %v", root, err)}
	}
	l, err := lock.Acquire(ctx, filepath.Join(root, "lock"), func(h *lock.HeldError) {
		logf("waiting for another process building the test kernel (pid %d)", h.PID)
	})
	if err != nil {
		return nil, err
	}
	defer l.Release()
	k := &Kernel{Repo: filepath.Join(root, "linux"), CacheDir: filepath.Join(root, "cache"), Fragment: filepath.Join(root, "test.config")}
	if err := os.WriteFile(k.Fragment, []byte(Fragment), 0o644); err != nil {
		return nil, err
	}
	if err := ensureHistory(ctx, k.Repo, logf); err != nil {
		return nil, err
	}
	image, err := build(ctx, k, logf)
	if err != nil {
		return nil, err
	}
	k.Image = image
	return k, nil
}

func ensureHistory(ctx context.Context, repo string, logf func(string, ...any)) error {
	if _, err := (&git.Repo{Dir: repo}).ResolveCommit(ctx, "tip"); err == nil {
		return nil
	}
	logf("making the kernel history in %s (a few minutes, once per machine)", repo)
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(projectRoot(), "examples", "make-kernel-history.sh"), repo)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &SkipError{fmt.Sprintf("cannot make the kernel history (Debian's kernel source package unreachable?): %v\n%s", err, tail(out))}
	}
	logf("kernel history ready in %s", time.Since(start).Round(time.Second))
	return nil
}

// build builds tip of the history (or finds it in the artifact cache) and
// returns its image.
func build(ctx context.Context, k *Kernel, logf func(string, ...any)) (string, error) {
	src, err := git.Open(ctx, k.Repo)
	if err != nil {
		return "", err
	}
	clone, err := git.EnsureClone(ctx, src, k.CacheDir)
	if err != nil {
		return "", err
	}
	tip, err := src.ResolveCommit(ctx, "tip")
	if err != nil {
		return "", err
	}
	wt, err := clone.Worktree(ctx, tip)
	if err != nil {
		return "", err
	}
	defer wt.Release()
	if err := wt.Checkout(ctx, tip); err != nil {
		return "", err
	}
	info, err := wt.Info(ctx, tip, false)
	if err != nil {
		return "", err
	}
	frag, err := kbuild.ReadFragment(k.Fragment)
	if err != nil {
		return "", err
	}
	b := &kbuild.Builder{CacheDir: k.CacheDir, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	start := time.Now()
	res, err := b.Build(ctx, kbuild.Request{Src: wt.Dir, Commit: tip, Tree: info.Tree, Opts: kbuild.Options{Fragments: []kbuild.Fragment{frag}},
		LogDir: filepath.Join(Root(), "logs")})
	if err != nil {
		return "", fmt.Errorf("building the test kernel: %w", err)
	}
	if res.Verdict != "ok" {
		return "", fmt.Errorf("the test kernel did not build: %s (log %s)", res.Reason, res.Log)
	}
	if !res.Cached {
		logf("test kernel built in %s (%d objects, %d from ccache)", time.Since(start).Round(time.Second), res.Compiled, res.CcacheHits)
	}
	return res.Kernel, nil
}

func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}
