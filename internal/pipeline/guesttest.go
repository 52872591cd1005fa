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
	"sync"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/rootfs"
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
	// Root, if set, is what the guest test runs on instead of the
	// initramfs (--rootfs): read-only, a tmpfs overlay on top.
	Root *rootfs.Root
	// Init, guest.InitSystem, boots Root's own init, the test one of its
	// services (--init system).
	Init string
	// Machine is QEMU's machine type (target.Boot.Machine): kernels are
	// built for it.
	Machine string
	Log     *slog.Logger
	// machine, for a real machine, is how its kernels are built.
	machine *machineBuild
	// nonce makes each boot's nonce (tests replaying a recorded console
	// give the recorded one).
	nonce func() string
}

// Defaults for the deadlines.
const (
	DefaultBootTimeout = 60 * time.Second
	DefaultTestTimeout = 10 * time.Minute
)

// GuestOutcome is a boot-and-test's result, with its evidence.
type GuestOutcome struct {
	Runs       []Run
	GuestRoot  string        // what the test ran on, when not the initramfs (rootfs.Root.Describe)
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

func newNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Kernel is what a boot boots: the image and, for a real machine, its
// modules (a tar of lib/modules/Release).
type Kernel struct {
	Image   string
	Modules string
	Release string
	Config  string
}

// Run boots kernel and runs the test repeat times. Errors are
// infrastructure failures (never verdicts).
func (g *GuestTest) Run(ctx context.Context, kernel Kernel, commit string, step, repeat int, dir string) (GuestOutcome, error) {
	var out GuestOutcome
	if g.Root != nil {
		out.GuestRoot = g.Root.Describe
	}
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

// bootPlan is one boot's own part: its nonce, its guest SSH (for a host
// test), the initramfs overlay made for it, and where its evidence goes.
type bootPlan struct {
	nonce  string
	gs     *guestSSH
	commit string
	step   int
	runs   int
	first  int
	dir    string
}

func (g *GuestTest) timeout() time.Duration {
	if g.Timeout <= 0 {
		return DefaultTestTimeout
	}
	return g.Timeout
}

func (g *GuestTest) bootTimeout() time.Duration {
	switch {
	case g.BootTimeout > 0:
		return g.BootTimeout
	case g.Init == guest.InitSystem:
		// A whole init system under TCG: systemd takes ~35 s to run
		// the test on a minimal Debian root.
		return SystemBootTimeout
	}
	return DefaultBootTimeout
}

// SystemBootTimeout is the default boot timeout with --init system.
const SystemBootTimeout = 3 * time.Minute

// boot is one boot: runs runs of the test (numbered after first), judged
// by the classifier.
func (g *GuestTest) boot(ctx context.Context, kernel Kernel, commit string, step, runs, first int, dir string) (GuestOutcome, error) {
	mk := newNonce
	if g.nonce != nil {
		mk = g.nonce
	}
	p := &bootPlan{nonce: mk(), commit: commit, step: step, runs: runs, first: first, dir: dir}
	b, err := g.prepare(p, kernel)
	if p.gs != nil {
		defer p.gs.close()
	}
	if err != nil {
		return GuestOutcome{}, err
	}
	m, err := g.Target.Boot(ctx, b)
	if err != nil {
		return GuestOutcome{}, outcome.Retryable("boot", err)
	}
	defer func() { m.Stop(); m.Wait() }()
	if g.Shell {
		ex := m.Wait()
		return GuestOutcome{Boot: ex.Duration, ConsoleLog: m.ConsoleLog()}, nil
	}
	out, err := g.drive(ctx, m, NewClassifier(g.classifyConfig(p)), p)
	out.ConsoleLog = m.ConsoleLog()
	return out, err
}

// prepare makes the boot's guest SSH keys (host tests), its initramfs and
// command line.
func (g *GuestTest) prepare(p *bootPlan, kernel Kernel) (target.Boot, error) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return target.Boot{}, outcome.InfraErr("boot", err)
	}
	s := guest.Settings{Nonce: p.nonce, Commit: p.commit, Step: p.step, Runs: p.runs, FirstRun: p.first, TimeoutS: g.timeout().Seconds(), Shell: g.Shell,
		Root: g.Root.Settings(), Init: g.Init}
	if g.Test == "" && g.Host == nil && !g.Shell {
		s.Runs = 0
	}
	var forwards []int
	if g.Host != nil && !g.Shell {
		var err error
		if p.gs, err = newGuestSSH(); err != nil {
			return target.Boot{}, outcome.InfraErr("ssh keys", err)
		}
		s.SSHKey, s.WaitGo, s.NoGuestTest = p.gs.pub, true, g.Test == ""
		forwards = append([]int{guest.SSHPort}, g.Host.Forwards...)
	}
	initrd := filepath.Join(p.dir, "initramfs.cpio")
	if err := writeInitrd(initrd, g.BaseInitrd, s, g.Test, g.Files); err != nil {
		return target.Boot{}, outcome.InfraErr("initramfs", err)
	}
	cmdline := "console=ttyS0,115200 panic=-1 oops=panic panic_on_warn=0 rdinit=/init"
	if g.Cmdline != "" {
		cmdline += " " + g.Cmdline
	}
	b := target.Boot{Kernel: kernel.Image, Modules: kernel.Modules, Release: kernel.Release, Config: kernel.Config, Nonce: p.nonce, Extra: g.Cmdline,
		Initrd: initrd, InitrdBase: g.BaseInitrd, Cmdline: cmdline, Machine: g.Machine, Dir: p.dir, MemMiB: g.MemMiB,
		CPUs: g.CPUs, Net: g.Net || p.gs != nil, Forwards: forwards, Interactive: g.Shell}
	if r := g.Root; r != nil {
		b.Share, b.Virtiofsd, b.Disk, b.DiskFormat = r.Share, r.Virtiofsd, r.Disk, r.Format
	}
	if p.gs != nil {
		b.AgentSSH = guest.SSHPort
	}
	return b, nil
}

func (g *GuestTest) classifyConfig(p *bootPlan) ClassifyConfig {
	runs := p.runs
	if g.Test == "" && g.Host == nil {
		runs = 0
	}
	return ClassifyConfig{Nonce: p.nonce, Runs: runs, First: p.first, GuestTest: g.Test != "", HostTest: p.gs != nil,
		UnreachableBad: g.Host != nil && g.Host.UnreachableBad, BootFailureBad: g.BootFailureBad, CrashMatch: g.CrashMatch,
		Timeout: g.timeout(), BootTimeout: g.bootTimeout()}
}

// drive is one boot's event loop: it feeds the classifier what the machine,
// the guest's SSH and the host test do, and does what the classifier asks,
// until it has its answer. Every goroutine it starts is joined before it
// returns, and ends with ctx.
func (g *GuestTest) drive(parent context.Context, m target.Machine, c *Classifier, p *bootPlan) (GuestOutcome, error) {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	events := make(chan Event)
	send := func(ev Event) {
		select {
		case events <- ev:
		case <-ctx.Done():
		}
	}
	spawn := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	start := time.Now()
	armed := c.Timer()
	timer := time.NewTimer(armed)
	defer timer.Stop()
	lines := m.Lines()
	for {
		var ev Event
		select {
		case <-parent.Done():
			out, _ := c.Outcome()
			return out, parent.Err()
		case line, ok := <-lines:
			ev = lineEvent(line, m, p.nonce)
			if !ok {
				lines, ev = nil, Event{Kind: EvExit, Exit: m.Wait()}
			}
		case ev = <-events:
		case <-timer.C:
			ev = Event{Kind: EvTimer}
		}
		ev.At = time.Since(start)
		act := c.Feed(ev)
		if t := c.Timer(); t != armed {
			armed = t
			timer.Reset(max(t-time.Since(start), 0))
		}
		switch act {
		case Done:
			return c.Outcome()
		case Connect:
			spawn(func() { send(connected(ctx, p.gs, m, g.bootTimeout())) })
		case StartRun:
			g.startRun(ctx, m, p, c.Run(), spawn, send)
		case PowerOff:
			n := c.Run()
			spawn(func() { _ = p.gs.start(n, finishSettle) })
		}
	}
}

// lineEvent is a console line; a run's result marker carries the result,
// from the result channel when it has it (authoritative) or the marker.
func lineEvent(line string, m target.Machine, nonce string) Event {
	ev := Event{Kind: EvLine, Line: line}
	if r, ok := guest.ParseMarker(line, nonce); ok {
		if pr, ok := portResult(m.ResultLog(), nonce, r.Run); ok {
			r = pr
		}
		ev.Result = &r
	}
	return ev
}

// connected waits for the guest's SSH server.
func connected(ctx context.Context, gs *guestSSH, m target.Machine, within time.Duration) Event {
	if err := gs.connect(ctx, m.HostPort(guest.SSHPort), time.Now().Add(within)); err != nil {
		return Event{Kind: EvSSHFailed, Err: err}
	}
	return Event{Kind: EvSSHReady}
}

// startRun starts run n's host half and tells the guest to start its half.
func (g *GuestTest) startRun(ctx context.Context, m target.Machine, p *bootPlan, n int, spawn func(func()), send func(Event)) {
	env := p.gs.env(g.Host, m.HostPort, p.commit, p.step, n)
	log := filepath.Join(p.dir, fmt.Sprintf("host-run-%d.log", n))
	spawn(func() { send(Event{Kind: EvHost, Host: runHost(ctx, g.Host.File, env, log, g.timeout())}) })
	spawn(func() {
		if err := p.gs.start(n, 20*time.Second); err != nil {
			send(Event{Kind: EvStartFailed, Err: err})
		}
	})
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
