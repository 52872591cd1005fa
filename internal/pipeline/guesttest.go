package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/firstbad/firstbad/internal/console"
	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/target"
)

// GuestTest boots a kernel on a target with firstbad's initramfs and runs the
// user's guest test in it, once or Repeat times per boot.
type GuestTest struct {
	Target      target.Target
	BaseInitrd  string // the cached base archive (busybox + agent)
	Test        string // the guest test script ("" with Shell: boot only)
	Files       []guest.File
	Timeout     time.Duration // one run of the test (guest side; the host allows a grace on top)
	BootTimeout time.Duration // QEMU start to the agent's start marker
	RebootEach  bool
	// BootFailureBad makes a kernel that does not boot count as bad.
	BootFailureBad bool
	// CrashMatch, if set, makes a crash with another title a skip.
	CrashMatch *regexp.Regexp
	MemMiB     int
	CPUs       int
	Net        bool
	Cmdline    string // extra kernel command line
	Shell      bool
	// Host, if set, runs on the host against the guest over SSH, at the
	// same moment as the guest test (which may be absent).
	Host *HostTest
	Log  *slog.Logger
}

// Defaults for the deadlines.
const (
	DefaultBootTimeout = 60 * time.Second
	DefaultTestTimeout = 10 * time.Minute
	hostGrace          = 20 * time.Second
)

// GuestOutcome is a boot-and-test's result, with its evidence.
type GuestOutcome struct {
	Runs       []Run
	Boot       time.Duration // QEMU start to the start marker (first boot)
	ConsoleLog string
	Crash      string
}

// Close lets go of the target: a hosted one (a VM host, a libvirt domain)
// holds a connection or a domain until then.
func (g *GuestTest) Close() {
	if h, ok := g.Target.(target.Hosted); ok {
		h.Close()
	}
}

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Run boots kernel and runs the test repeat times. Errors are
// infrastructure failures (never verdicts).
func (g *GuestTest) Run(ctx context.Context, kernel, commit string, step, repeat int, dir string) (GuestOutcome, error) {
	var out GuestOutcome
	repeat = max(repeat, 1)
	boots, perBoot := 1, repeat
	if g.RebootEach {
		boots, perBoot = repeat, 1
	}
	for b := 0; b < boots && len(out.Runs) < repeat; b++ {
		bdir := dir
		if boots > 1 {
			bdir = filepath.Join(dir, fmt.Sprintf("boot-%d", b+1))
		}
		one, err := g.boot(ctx, kernel, commit, step, perBoot, len(out.Runs), bdir)
		if errors.Is(err, target.ErrConnLost) && ctx.Err() == nil {
			// The VM host's connection dropped: not the kernel's doing.
			// One more try on a fresh connection, then it is an error.
			if g.Log != nil {
				g.Log.Warn("lost the connection to the VM host; booting once more", "err", err)
			}
			one, err = g.boot(ctx, kernel, commit, step, perBoot, len(out.Runs), bdir)
		}
		if err != nil {
			return out, err
		}
		if b == 0 {
			out.Boot, out.ConsoleLog, out.Crash = one.Boot, one.ConsoleLog, one.Crash
		}
		out.Runs = append(out.Runs, one.Runs...)
		// A boot failure or crash ends the step: the kernel is the answer.
		if one.Crash != "" || len(one.Runs) < perBoot {
			break
		}
	}
	return out, nil
}

func (g *GuestTest) boot(ctx context.Context, kernel, commit string, step, runs, first int, dir string) (GuestOutcome, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return GuestOutcome{}, outcome.InfraErr("boot", err)
	}
	n := nonce()
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = DefaultTestTimeout
	}
	s := guest.Settings{Nonce: n, Commit: commit, Step: step, Runs: runs, FirstRun: first, TimeoutS: timeout.Seconds(), Shell: g.Shell}
	if g.Test == "" && g.Host == nil && !g.Shell {
		s.Runs = 0
	}
	var gs *guestSSH
	forwards := []int(nil)
	if g.Host != nil && !g.Shell {
		var err error
		if gs, err = newGuestSSH(); err != nil {
			return GuestOutcome{}, outcome.InfraErr("ssh keys", err)
		}
		defer gs.close()
		s.SSHKey, s.WaitGo, s.NoGuestTest = gs.pub, true, g.Test == ""
		forwards = append([]int{guest.SSHPort}, g.Host.Forwards...)
	}
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := writeInitrd(initrd, g.BaseInitrd, s, g.Test, g.Files); err != nil {
		return GuestOutcome{}, outcome.InfraErr("initramfs", err)
	}
	cmdline := "console=ttyS0,115200 panic=-1 oops=panic panic_on_warn=0 rdinit=/init"
	if g.Cmdline != "" {
		cmdline += " " + g.Cmdline
	}
	bootTimeout := g.BootTimeout
	if bootTimeout <= 0 {
		bootTimeout = DefaultBootTimeout
	}
	start := time.Now()
	m, err := g.Target.Boot(ctx, target.Boot{Kernel: kernel, Initrd: initrd, InitrdBase: g.BaseInitrd, Cmdline: cmdline, Dir: dir, MemMiB: g.MemMiB,
		CPUs: g.CPUs, Net: g.Net || gs != nil, Forwards: forwards, Interactive: g.Shell})
	if err != nil {
		return GuestOutcome{}, outcome.Retryable("boot", err)
	}
	defer func() { m.Stop(); m.Wait() }()
	out := GuestOutcome{ConsoleLog: m.ConsoleLog()}
	if g.Shell {
		ex := m.Wait()
		out.Boot = ex.Duration
		return out, nil
	}
	var text strings.Builder
	started := false
	deadline := time.NewTimer(bootTimeout)
	defer deadline.Stop()
	var runStart time.Time
	// With a host test, each run has a guest half and a host half.
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	hostCh := make(chan Run, 1)
	var guestHalf, hostHalf *Run
	startRun := func() error {
		n := first + len(out.Runs) + 1
		runStart = time.Now()
		deadline.Reset(timeout + hostGrace)
		if gs == nil {
			return nil
		}
		guestHalf, hostHalf = nil, nil
		env := gs.env(g.Host, m.HostPort, commit, step, n)
		go func() {
			hostCh <- runHost(hctx, g.Host.File, env, filepath.Join(dir, fmt.Sprintf("host-run-%d.log", n)), timeout)
		}()
		return gs.start(n, 20*time.Second)
	}
	// record adds a finished run and says whether the boot is done.
	record := func(r Run) bool {
		out.Runs = append(out.Runs, r)
		return len(out.Runs) == runs
	}
	// finish ends a boot whose runs are all in: the agent is told to
	// power off (with a host test it waits for that) and what it still
	// prints is kept as evidence; then the deferred Stop.
	finish := func() (GuestOutcome, error) {
		if gs != nil {
			_ = gs.start(first+runs+1, 3*time.Second)
		}
		settle(m, &text, 3*time.Second)
		return out, nil
	}
	// next starts the next run; a guest that cannot be told to is a
	// skip, and the boot is over.
	next := func() bool {
		if err := startRun(); err != nil {
			out.Runs = append(out.Runs, Run{Verdict: outcome.Skip, ExitCode: -1, Reason: "guest SSH: starting the run: " + err.Error()})
			return false
		}
		return true
	}
	// halves records a run once both halves are in (or the host half
	// alone is bad: a hung guest may never report).
	halves := func() (done, complete bool) {
		switch {
		case hostHalf != nil && guestHalf != nil:
			r := *hostHalf
			if g.Test != "" {
				r = combineHalves(*guestHalf, *hostHalf)
			}
			return true, record(r)
		case hostHalf != nil && hostHalf.Verdict == outcome.Bad:
			return true, record(*hostHalf)
		}
		return false, false
	}
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case line, ok := <-m.Lines():
			if !ok {
				// The machine is gone.
				ex := m.Wait()
				return g.ended(out, text.String(), started, ex, runs)
			}
			text.WriteString(line + "\n")
			if !started && strings.Contains(line, guest.StartMarker+" nonce="+n) {
				started = true
				out.Boot = time.Since(start)
				runStart = time.Now()
				deadline.Reset(timeout + hostGrace)
				if s.Runs == 0 {
					return out, nil
				}
				if gs != nil {
					if err := gs.connect(ctx, m.HostPort(guest.SSHPort), time.Now().Add(bootTimeout)); err != nil {
						if ctx.Err() != nil {
							return out, ctx.Err()
						}
						v := outcome.Skip
						if g.Host.UnreachableBad {
							v = outcome.Bad
						}
						out.Runs = append(out.Runs, Run{Verdict: v, ExitCode: -1, Reason: err.Error()})
						return out, nil
					}
					if !next() {
						return out, nil
					}
				}
				continue
			}
			if r, ok := guest.ParseMarker(line, n); ok && started {
				if pr, ok := portResult(m.ResultLog(), n, r.Run); ok {
					r = pr // the result channel is authoritative
				}
				res := g.fromResult(r)
				var complete bool
				if gs == nil {
					complete = record(res)
				} else {
					guestHalf = &res
					var done bool
					if done, complete = halves(); !done {
						continue
					}
				}
				if complete {
					return finish()
				}
				if !next() {
					return out, nil
				}
				continue
			}
			if c := console.Parse(line); c != nil {
				// Let the report finish (a few hundred ms of output),
				// then classify with the whole of it.
				settle(m, &text, 2*time.Second)
				c = console.Parse(text.String())
				out.Crash = c.Title
				return g.crashed(out, c, started, time.Since(runStart)), nil
			}
		case h := <-hostCh:
			hostHalf = &h
			done, complete := halves()
			if !done {
				continue
			}
			switch {
			case complete:
				return finish()
			case h.Verdict == outcome.Bad && guestHalf == nil:
				// The guest is stuck in this run: the step has its answer.
				return out, nil
			}
			if !next() {
				return out, nil
			}
		case <-deadline.C:
			if !started {
				return g.noStart(out, text.String(), bootTimeout), nil
			}
			out.Runs = append(out.Runs, Run{Verdict: outcome.Bad, ExitCode: -1, Duration: time.Since(runStart),
				Reason: fmt.Sprintf("hang: no result within %s (the kernel stopped responding)", timeout+hostGrace)})
			return out, nil
		}
	}
}

// settle reads what the console still prints for up to d.
func settle(m target.Machine, text *strings.Builder, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case line, ok := <-m.Lines():
			if !ok {
				return
			}
			text.WriteString(line + "\n")
		case <-t.C:
			return
		}
	}
}

// fromResult classifies one reported run with git bisect run's exit codes;
// a run the agent killed at its deadline is a hang (bad).
func (g *GuestTest) fromResult(r guest.RunResult) Run {
	run := Run{ExitCode: r.ExitCode, Duration: time.Duration(r.Duration * float64(time.Second))}
	if r.Timeout {
		run.Verdict, run.Reason = outcome.Bad, "hang: the test did not finish within its timeout"
		return run
	}
	run.Verdict, run.Reason = exitClass(r.ExitCode)
	return run
}

// exitClass classifies a test's exit code as git bisect run does, for a
// test that cannot abort the bisect: 128 and over is a skip ("abort").
func exitClass(code int) (outcome.Verdict, string) {
	v, abort := ExitVerdict(code, false)
	switch {
	case abort:
		return outcome.Skip, fmt.Sprintf("exit %d: abort", code)
	case code == 125:
		return v, "exit 125: skip"
	}
	return v, fmt.Sprintf("exit %d", code)
}

// crashed classifies a kernel crash seen on the console.
func (g *GuestTest) crashed(out GuestOutcome, c *console.Crash, started bool, d time.Duration) GuestOutcome {
	if !started || c.Boot {
		return g.bootFailure(out, "boot failure: "+c.Title)
	}
	run := Run{Verdict: outcome.Bad, ExitCode: -1, Duration: d, Crash: c.Title, Reason: "crash: " + c.Title}
	if g.CrashMatch != nil && !g.CrashMatch.MatchString(c.Title) {
		run.Verdict, run.Reason = outcome.Skip, fmt.Sprintf("a different crash (%s) than --crash-match %q", c.Title, g.CrashMatch)
	}
	out.Runs = append(out.Runs, run)
	return out
}

func (g *GuestTest) bootFailure(out GuestOutcome, reason string) GuestOutcome {
	v := outcome.Skip
	if g.BootFailureBad {
		v = outcome.Bad
	}
	out.Runs = append(out.Runs, Run{Verdict: v, ExitCode: -1, Reason: reason})
	return out
}

func (g *GuestTest) noStart(out GuestOutcome, text string, d time.Duration) GuestOutcome {
	if strings.TrimSpace(stripQEMU(text)) == "" {
		return g.bootFailure(out, fmt.Sprintf("boot failure: no console output within %s: the kernel likely lacks a serial console "+
			"(CONFIG_SERIAL_8250_CONSOLE, CONFIG_PRINTK) or did not start", d))
	}
	return g.bootFailure(out, fmt.Sprintf("boot failure: no start marker from the guest agent within %s "+
		"(check CONFIG_BLK_DEV_INITRD, CONFIG_BINFMT_ELF, CONFIG_DEVTMPFS in the console log)", d))
}

// ended classifies a machine that went away by itself.
func (g *GuestTest) ended(out GuestOutcome, text string, started bool, ex target.Exit, runs int) (GuestOutcome, error) {
	if c := console.Parse(text); c != nil {
		out.Crash = c.Title
		return g.crashed(out, c, started, 0), nil
	}
	if len(out.Runs) == runs && started {
		return out, nil
	}
	if ex.Err != nil {
		return out, outcome.Retryable("qemu", ex.Err)
	}
	if !started && strings.TrimSpace(stripQEMU(text)) != "" && ex.Code == 0 {
		// The kernel ran and stopped the VM before the agent spoke: a
		// boot failure of the kernel (e.g. it rebooted on a panic we did
		// not recognize).
		return g.bootFailure(out, "boot failure: the kernel stopped before the guest agent started"), nil
	}
	return out, outcome.Retryable("qemu", fmt.Errorf("QEMU exited (status %d) without a result and without a kernel-side reason", ex.Code))
}

// stripQEMU drops QEMU's own lines (our command echo, its warnings).
func stripQEMU(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "qemu-system") || strings.HasPrefix(l, "firstbad: ") {
			continue
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// writeInitrd concatenates the cached base archive and this boot's overlay.
func writeInitrd(path, base string, s guest.Settings, test string, files []guest.File) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	in, err := os.Open(base)
	if err != nil {
		return err
	}
	defer in.Close()
	if _, err := io.Copy(f, in); err != nil {
		return err
	}
	if err := guest.Overlay(f, s, test, files); err != nil {
		return err
	}
	return f.Close()
}

// portResult reads run n's result from the virtio-serial result channel.
func portResult(path, nonce string, n int) (guest.RunResult, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return guest.RunResult{}, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		var r guest.RunResult
		if json.Unmarshal([]byte(line), &r) == nil && r.Nonce == nonce && r.Run == n {
			return r, true
		}
	}
	return guest.RunResult{}, false
}
