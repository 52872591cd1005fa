package pipeline

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/console"
	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/target"
)

// What a step means is decided here, and only here: the classifier is a
// pure state machine fed the events of one boot (console lines, results,
// host-test halves, the guest's SSH, timers, the machine's end). It does
// no I/O; the event loop in guesttest.go does what it asks (start a run,
// connect, arm a timer) and feeds back what happened. Tests drive it with
// recorded consoles, no QEMU needed.

// EventKind is what happened.
type EventKind int

// Events of one boot.
const (
	// EvLine is a console line; Result is set when the line is a run's
	// result marker (the loop reads the result channel for it first).
	EvLine EventKind = iota
	// EvHost is a host test's half of a run.
	EvHost
	// EvSSHReady and EvSSHFailed end a connection to the guest's SSH.
	EvSSHReady
	EvSSHFailed
	// EvStartFailed: the guest could not be told to start a run.
	EvStartFailed
	// EvTimer is the timer the classifier asked for.
	EvTimer
	// EvExit is the machine gone (QEMU exited, the domain shut off).
	EvExit
)

// Event is one thing that happened, At after the machine started.
type Event struct {
	Kind   EventKind
	At     time.Duration
	Line   string
	Result *guest.RunResult
	Host   Run
	Err    error
	Exit   target.Exit
}

// Action is what the event loop does after an event.
type Action int

// Actions.
const (
	// Continue waiting for events.
	Continue Action = iota
	// Connect to the guest's SSH (then EvSSHReady or EvSSHFailed).
	Connect
	// StartRun starts run Classifier.Run() (the host half, and the
	// guest's go signal; EvStartFailed if the guest cannot be told).
	StartRun
	// PowerOff tells the agent, past the last run, to power off.
	PowerOff
	// Done: Classifier.Outcome() is the answer.
	Done
)

type phase int

const (
	booting    phase = iota // until the agent's start marker
	connecting              // to the guest's SSH (host tests)
	running                 // a run in progress
	settling                // a crash seen: reading the rest of its report
	finishing               // all runs in: reading what the guest still says
	over
)

// ClassifyConfig is what judging a boot depends on.
type ClassifyConfig struct {
	Nonce          string
	Runs           int // runs in this boot (0: boot only)
	First          int // runs before this boot in the step
	GuestTest      bool
	HostTest       bool
	UnreachableBad bool
	BootFailureBad bool
	CrashMatch     *regexp.Regexp
	Timeout        time.Duration // one run, guest side
	BootTimeout    time.Duration
}

// Grace periods the classifier waits for: the host's margin over a run's
// own timeout, the rest of a crash report, the guest's last words.
const (
	hostGrace    = 20 * time.Second
	crashSettle  = 2 * time.Second
	finishSettle = 3 * time.Second
)

// Classifier judges one boot.
type Classifier struct {
	cfg      ClassifyConfig
	phase    phase
	text     strings.Builder
	started  bool
	runStart time.Duration
	timer    time.Duration // absolute, since the machine started
	guest    *Run
	host     *Run
	out      GuestOutcome
	err      error
}

// NewClassifier starts judging a boot that has just started.
func NewClassifier(cfg ClassifyConfig) *Classifier {
	return &Classifier{cfg: cfg, timer: cfg.BootTimeout}
}

// Timer is when (since the machine started) the classifier wants EvTimer.
func (c *Classifier) Timer() time.Duration { return c.timer }

// Run is the number of the run to start (StartRun) or past the last one
// (PowerOff).
func (c *Classifier) Run() int { return c.cfg.First + len(c.out.Runs) + 1 }

// Outcome is the answer once Done: the runs, the boot time, the crash;
// the error is an infrastructure failure (never a verdict).
func (c *Classifier) Outcome() (GuestOutcome, error) { return c.out, c.err }

// Console is everything the console said so far.
func (c *Classifier) Console() string { return c.text.String() }

// Feed takes one event and says what to do next.
func (c *Classifier) Feed(ev Event) Action {
	if ev.Kind == EvLine {
		c.text.WriteString(ev.Line + "\n")
	}
	switch c.phase {
	case settling:
		if ev.Kind == EvTimer || ev.Kind == EvExit {
			return c.crashed(ev.At)
		}
		return Continue
	case finishing:
		if ev.Kind == EvTimer || ev.Kind == EvExit {
			return c.done()
		}
		return Continue
	case over:
		return Done
	}
	switch ev.Kind {
	case EvLine:
		return c.line(ev)
	case EvHost:
		h := ev.Host
		c.host = &h
		return c.halves(ev.At)
	case EvSSHReady:
		c.phase = running
		return c.startRun(ev.At)
	case EvSSHFailed:
		return c.unreachable(ev.Err)
	case EvStartFailed:
		c.out.Runs = append(c.out.Runs, Run{Verdict: outcome.Skip, ExitCode: -1, Reason: "guest SSH: starting the run: " + ev.Err.Error()})
		return c.done()
	case EvTimer:
		return c.timeout(ev.At)
	case EvExit:
		return c.ended(ev.Exit)
	}
	return Continue
}

func (c *Classifier) line(ev Event) Action {
	if !c.started && strings.Contains(ev.Line, guest.StartMarker+" nonce="+c.cfg.Nonce) {
		return c.start(ev.At)
	}
	if _, why, ok := strings.Cut(ev.Line, guest.SetupFailedMarker+" nonce="+c.cfg.Nonce+" "); ok && !c.started {
		// What the test runs on could not be set up: not the kernel's
		// verdict, whatever it is.
		c.err = outcome.InfraErr("guest", fmt.Errorf("the guest agent could not set up the test's root: %s", why))
		return c.done()
	}
	if ev.Result != nil && c.started && ev.Result.Nonce == c.cfg.Nonce {
		g := c.fromResult(*ev.Result)
		if !c.cfg.HostTest {
			return c.record(g, ev.At)
		}
		c.guest = &g
		return c.halves(ev.At)
	}
	if console.Parse(ev.Line) != nil {
		// Let the report finish (a few hundred ms of output), then
		// classify with the whole of it.
		c.phase, c.timer = settling, ev.At+crashSettle
	}
	return Continue
}

// start is the agent's start marker: the kernel booted.
func (c *Classifier) start(at time.Duration) Action {
	c.started, c.out.Boot = true, at
	if c.cfg.Runs == 0 {
		return c.done()
	}
	if c.cfg.HostTest {
		c.phase, c.timer = connecting, at+c.cfg.BootTimeout
		return Connect
	}
	c.phase = running
	c.runStart, c.timer = at, at+c.cfg.Timeout+hostGrace
	return Continue
}

// startRun begins a run with a host half.
func (c *Classifier) startRun(at time.Duration) Action {
	c.guest, c.host = nil, nil
	c.runStart, c.timer = at, at+c.cfg.Timeout+hostGrace
	return StartRun
}

// record adds a finished run: the boot is done, or the next run starts.
func (c *Classifier) record(r Run, at time.Duration) Action {
	c.out.Runs = append(c.out.Runs, r)
	if len(c.out.Runs) == c.cfg.Runs {
		c.phase, c.timer = finishing, at+finishSettle
		if c.cfg.HostTest {
			return PowerOff
		}
		return Continue
	}
	if c.cfg.HostTest {
		return c.startRun(at)
	}
	// The agent runs the guest test's runs back to back by itself.
	c.runStart, c.timer = at, at+c.cfg.Timeout+hostGrace
	return Continue
}

// halves records a run once both halves are in, or the host half alone
// when it is bad (a hung guest may never report).
func (c *Classifier) halves(at time.Duration) Action {
	switch {
	case c.host != nil && c.guest != nil:
		// The agent reports every run, also without a guest test.
		r := *c.host
		if c.cfg.GuestTest {
			r = combineHalves(*c.guest, *c.host)
		}
		return c.record(r, at)
	case c.host != nil && c.host.Verdict == outcome.Bad:
		// The guest is stuck in this run: the step has its answer.
		c.out.Runs = append(c.out.Runs, *c.host)
		return c.done()
	}
	return Continue
}

func (c *Classifier) unreachable(err error) Action {
	v := outcome.Skip
	if c.cfg.UnreachableBad {
		v = outcome.Bad
	}
	msg := "guest SSH not reachable"
	if err != nil {
		msg = err.Error()
	}
	c.out.Runs = append(c.out.Runs, Run{Verdict: v, ExitCode: -1, Reason: msg})
	return c.done()
}

func (c *Classifier) timeout(at time.Duration) Action {
	switch c.phase {
	case booting:
		c.out.Runs = append(c.out.Runs, c.noStart())
	case connecting:
		return c.unreachable(fmt.Errorf("guest SSH not reachable within %s", c.cfg.BootTimeout))
	default:
		c.out.Runs = append(c.out.Runs, Run{Verdict: outcome.Bad, ExitCode: -1, Duration: at - c.runStart,
			Reason: fmt.Sprintf("hang: no result within %s (the kernel stopped responding)", c.cfg.Timeout+hostGrace)})
	}
	return c.done()
}

func (c *Classifier) done() Action {
	c.phase = over
	return Done
}

// fromResult classifies one reported run with git bisect run's exit codes;
// a run the agent killed at its deadline is a hang (bad).
func (c *Classifier) fromResult(r guest.RunResult) Run {
	run := Run{ExitCode: r.ExitCode, Duration: time.Duration(r.Duration * float64(time.Second))}
	if r.Timeout {
		run.Verdict, run.Reason = outcome.Bad, "hang: the test did not finish within its timeout"
		return run
	}
	run.Verdict, run.Reason = exitClass(r.ExitCode)
	return run
}

// crashed classifies a kernel crash, with the whole report read.
func (c *Classifier) crashed(at time.Duration) Action {
	cr := console.Parse(c.text.String())
	if cr == nil {
		// Only a crash's first line was seen: nothing more to judge.
		return c.done()
	}
	c.out.Crash = cr.Title
	if !c.started || cr.Boot {
		c.out.Runs = append(c.out.Runs, c.bootFailure("boot failure: "+cr.Title))
		return c.done()
	}
	run := Run{Verdict: outcome.Bad, ExitCode: -1, Duration: at - c.runStart, Crash: cr.Title, Reason: "crash: " + cr.Title}
	if c.cfg.CrashMatch != nil && !c.cfg.CrashMatch.MatchString(cr.Title) {
		run.Verdict, run.Reason = outcome.Skip, fmt.Sprintf("a different crash (%s) than --crash-match %q", cr.Title, c.cfg.CrashMatch)
	}
	c.out.Runs = append(c.out.Runs, run)
	return c.done()
}

func (c *Classifier) bootFailure(reason string) Run {
	v := outcome.Skip
	if c.cfg.BootFailureBad {
		v = outcome.Bad
	}
	return Run{Verdict: v, ExitCode: -1, Reason: reason}
}

func (c *Classifier) noStart() Run {
	if strings.TrimSpace(stripQEMU(c.text.String())) == "" {
		return c.bootFailure(fmt.Sprintf("boot failure: no console output within %s: the kernel likely lacks a serial console "+
			"(CONFIG_SERIAL_8250_CONSOLE, CONFIG_PRINTK) or did not start", c.cfg.BootTimeout))
	}
	return c.bootFailure(fmt.Sprintf("boot failure: no start marker from the guest agent within %s "+
		"(check CONFIG_BLK_DEV_INITRD, CONFIG_BINFMT_ELF, CONFIG_DEVTMPFS in the console log)", c.cfg.BootTimeout))
}

// ended classifies a machine that went away by itself.
func (c *Classifier) ended(ex target.Exit) Action {
	text := c.text.String()
	switch {
	case console.Parse(text) != nil:
		return c.crashed(ex.Duration)
	case c.started && len(c.out.Runs) == c.cfg.Runs:
	case ex.WrongKernel != "":
		c.out.Runs = append(c.out.Runs, Run{Verdict: outcome.Skip, ExitCode: -1, Reason: "booted the wrong kernel: " + ex.WrongKernel})
	case ex.BootFailure != "":
		c.out.Runs = append(c.out.Runs, c.bootFailure("boot failure: "+ex.BootFailure))
	case ex.Hung && c.started:
		c.out.Runs = append(c.out.Runs, Run{Verdict: outcome.Bad, ExitCode: -1, Duration: ex.Duration - c.runStart,
			Reason: "hang: the machine stopped answering"})
	case ex.Hung:
		c.out.Runs = append(c.out.Runs, c.bootFailure("boot failure: the machine stopped answering before the test started"))
	case ex.Err != nil:
		var oe *outcome.Error
		if errors.As(ex.Err, &oe) {
			c.err = ex.Err
			break
		}
		c.err = outcome.Retryable("qemu", ex.Err)
	case !c.started && strings.TrimSpace(stripQEMU(text)) != "" && ex.Code == 0:
		// The kernel ran and stopped the VM before the agent spoke: a
		// boot failure of the kernel (e.g. it rebooted on a panic we did
		// not recognize).
		c.out.Runs = append(c.out.Runs, c.bootFailure("boot failure: the kernel stopped before the guest agent started"))
	default:
		c.err = outcome.Retryable("qemu", fmt.Errorf("QEMU exited (status %d) without a result and without a kernel-side reason", ex.Code))
	}
	return c.done()
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
