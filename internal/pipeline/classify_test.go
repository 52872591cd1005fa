package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/target"
)

// capture is a console recorded from the project's test kernel under QEMU
// (testdata/NAME.console) and its result channel (NAME.result).
type capture struct {
	lines   []string
	results map[int]guest.RunResult
	nonce   string
}

func loadCapture(t *testing.T, name string) capture {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name + ".console")
	if err != nil {
		t.Fatal(err)
	}
	c := capture{lines: strings.Split(strings.TrimRight(string(data), "\n"), "\n"), results: map[int]guest.RunResult{}}
	for _, l := range c.lines {
		if _, n, ok := strings.Cut(l, guest.StartMarker+" nonce="); ok {
			c.nonce = strings.TrimSpace(n)
		}
	}
	res, _ := os.ReadFile("testdata/" + name + ".result")
	for _, l := range strings.Split(string(res), "\n") {
		var r guest.RunResult
		if json.Unmarshal([]byte(l), &r) == nil {
			c.results[r.Run] = r
		}
	}
	return c
}

// events turns a capture into the events a boot would give: one line per
// millisecond, results from the result channel when it has them, else
// from the marker (as the event loop does).
func (c capture) events(port bool) []Event {
	var evs []Event
	for i, l := range c.lines {
		ev := Event{Kind: EvLine, Line: l, At: time.Duration(i) * time.Millisecond}
		if r, ok := guest.ParseMarker(l, c.nonce); ok {
			if pr, ok := c.results[r.Run]; ok && port {
				r = pr
			}
			ev.Result = &r
		}
		evs = append(evs, ev)
	}
	return evs
}

// feed runs events through a classifier, then the given ends (a timer, the
// machine's exit) until it is done; it returns the outcome and the actions.
func feed(cfg ClassifyConfig, evs []Event, ends ...Event) (GuestOutcome, []Action, error) {
	c := NewClassifier(cfg)
	var acts []Action
	for _, ev := range append(evs, ends...) {
		if ev.Kind == EvTimer && ev.At == 0 {
			ev.At = c.Timer()
		}
		a := c.Feed(ev)
		if a != Continue {
			acts = append(acts, a)
		}
		if a == Done {
			out, err := c.Outcome()
			return out, acts, err
		}
	}
	return GuestOutcome{}, acts, errors.New("the classifier never finished")
}

// brief is what a test checks of an outcome: each run's verdict and reason.
func brief(out GuestOutcome) []string {
	var b []string
	for _, r := range out.Runs {
		b = append(b, r.Verdict.String()+": "+r.Reason)
	}
	return b
}

func TestClassifyRecordedConsoles(t *testing.T) {
	timer, exit := Event{Kind: EvTimer}, Event{Kind: EvExit, At: time.Hour}
	cases := []struct {
		name    string
		capture string
		cfg     func(*ClassifyConfig)
		port    bool    // the result channel has the results
		extra   []Event // after the capture's lines
		want    []string
		crash   string
	}{
		{"good", "good", nil, true, []Event{timer}, []string{"good: exit 0"}, ""},
		{"bad", "bad", nil, true, []Event{timer}, []string{"bad: exit 3"}, ""},
		{"three runs in one boot", "repeat", func(c *ClassifyConfig) { c.Runs = 3 }, true, []Event{timer},
			[]string{"good: exit 0", "bad: exit 1", "good: exit 0"}, ""},
		{"marker on the console only", "bad", nil, false, []Event{timer}, []string{"bad: exit 3"}, ""},
		{"test timed out in the guest", "hang", nil, true, []Event{timer}, []string{"bad: hang: the test did not finish within its timeout"}, ""},
		{"crash during the test", "panic", nil, true, []Event{exit},
			[]string{"bad: crash: Kernel panic - not syncing: sysrq triggered crash"}, "Kernel panic - not syncing: sysrq triggered crash"},
		{"another crash than --crash-match", "panic", func(c *ClassifyConfig) { c.CrashMatch = regexp.MustCompile("KASAN") }, true, []Event{exit},
			[]string{`skip: a different crash (Kernel panic - not syncing: sysrq triggered crash) than --crash-match "KASAN"`}, "Kernel panic - not syncing: sysrq triggered crash"},
		{"a result after the crash", "panic", nil, true, []Event{{Kind: EvLine, Line: "FIRSTBAD-RESULT nonce=NONCE run=1 exit=0"}, exit},
			[]string{"bad: crash: Kernel panic - not syncing: sysrq triggered crash"}, "Kernel panic - not syncing: sysrq triggered crash"},
		{"crash during boot", "bootfail", nil, true, []Event{exit},
			[]string{"skip: boot failure: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"}, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
		{"crash during boot, counted bad", "bootfail", func(c *ClassifyConfig) { c.BootFailureBad = true }, true, []Event{exit},
			[]string{"bad: boot failure: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"}, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := loadCapture(t, c.capture)
			cfg := ClassifyConfig{Nonce: cp.nonce, Runs: 1, GuestTest: true, Timeout: time.Minute, BootTimeout: time.Minute}
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			extra := append([]Event(nil), c.extra...)
			for i := range extra {
				extra[i].Line = strings.ReplaceAll(extra[i].Line, "NONCE", cp.nonce)
				if r, ok := guest.ParseMarker(extra[i].Line, cp.nonce); ok {
					extra[i].Result = &r
				}
			}
			out, _, err := feed(cfg, cp.events(c.port), extra...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, brief(out)); diff != "" {
				t.Errorf("runs (-want +got):\n%s", diff)
			}
			if out.Crash != c.crash {
				t.Errorf("crash %q, want %q", out.Crash, c.crash)
			}
			if c.capture != "bootfail" && out.Boot == 0 {
				t.Error("no boot time")
			}
		})
	}
}

// upTo is the capture's events up to and including the agent's start
// marker: the kernel booted, then something happens.
func upTo(cp capture) []Event {
	evs := cp.events(true)
	for i, ev := range evs {
		if strings.Contains(ev.Line, guest.StartMarker) {
			return evs[:i+1]
		}
	}
	return evs
}

func TestClassifyFailuresAroundTheTest(t *testing.T) {
	cp := loadCapture(t, "good")
	lost := fmt.Errorf("%w: vmhost: EOF", target.ErrConnLost)
	cases := []struct {
		name   string
		evs    []Event
		want   []string
		infra  bool // an infrastructure error, not a verdict
		target error
	}{
		{"kernel stops responding", append(upTo(cp), Event{Kind: EvTimer}),
			[]string{"bad: hang: no result within 1m20s (the kernel stopped responding)"}, false, nil},
		{"QEMU dies", append(upTo(cp), Event{Kind: EvExit, At: time.Second, Exit: target.Exit{Err: errors.New("signal: killed"), Code: -1}}),
			nil, true, nil},
		{"QEMU exits without a reason", append(upTo(cp), Event{Kind: EvExit, At: time.Second, Exit: target.Exit{Code: 1}}),
			nil, true, nil},
		{"connection to the VM host lost", append(upTo(cp), Event{Kind: EvExit, At: time.Second, Exit: target.Exit{Err: lost, Code: -1}}),
			nil, true, target.ErrConnLost},
		{"no start marker", append(cp.events(true)[:40], Event{Kind: EvTimer}),
			[]string{"skip: boot failure: no start marker from the guest agent within 1m0s (check CONFIG_BLK_DEV_INITRD, CONFIG_BINFMT_ELF, CONFIG_DEVTMPFS in the console log)"}, false, nil},
		{"no console at all", []Event{{Kind: EvLine, Line: "firstbad: qemu-system-x86_64 -machine q35"}, {Kind: EvTimer}},
			[]string{"skip: boot failure: no console output within 1m0s: the kernel likely lacks a serial console (CONFIG_SERIAL_8250_CONSOLE, CONFIG_PRINTK) or did not start"}, false, nil},
		{"the kernel powers off before the agent", append(cp.events(true)[:40], Event{Kind: EvExit, At: time.Second}),
			[]string{"skip: boot failure: the kernel stopped before the guest agent started"}, false, nil},
		// A real machine's ends.
		{"machine came up in another kernel", []Event{{Kind: EvLine, Line: "firstbad: machine: up after 30 s in Linux 6.1.0-9-amd64"},
			{Kind: EvExit, Exit: target.Exit{WrongKernel: "the machine came up in 6.1.0-9-amd64"}}},
			[]string{"skip: booted the wrong kernel: the machine came up in 6.1.0-9-amd64"}, false, nil},
		{"machine candidate never came up", []Event{{Kind: EvExit, Exit: target.Exit{BootFailure: "the candidate did not come up within 10m0s"}}},
			[]string{"skip: boot failure: the candidate did not come up within 10m0s"}, false, nil},
		{"machine stops answering in the test", append(upTo(cp), Event{Kind: EvExit, At: time.Second, Exit: target.Exit{Hung: true}}),
			[]string{"bad: hang: the machine stopped answering"}, false, nil},
		{"machine stops answering before the test", []Event{{Kind: EvExit, Exit: target.Exit{Hung: true}}},
			[]string{"skip: boot failure: the machine stopped answering before the test started"}, false, nil},
		{"machine panics in the test, seen on its console", append(upTo(cp), Event{Kind: EvLine, Line: "Kernel panic - not syncing: sysrq triggered crash"},
			Event{Kind: EvExit, At: time.Second, Exit: target.Exit{Hung: true}}),
			[]string{"bad: crash: Kernel panic - not syncing: sysrq triggered crash"}, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ClassifyConfig{Nonce: cp.nonce, Runs: 1, GuestTest: true, Timeout: time.Minute, BootTimeout: time.Minute}
			out, _, err := feed(cfg, c.evs)
			if c.infra {
				if !outcome.IsInfra(err) || !outcome.CanRetry(err) || len(out.Runs) != 0 {
					t.Fatalf("want a retryable infrastructure error and no verdict, got %v, %v", err, brief(out))
				}
				if c.target != nil && !errors.Is(err, c.target) {
					t.Errorf("error %v is not %v", err, c.target)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, brief(out)); diff != "" {
				t.Errorf("runs (-want +got):\n%s", diff)
			}
		})
	}
}

// An agent that cannot set up what the test runs on (--rootfs host on a
// kernel or QEMU without 9p) is the machine's problem: an infrastructure
// error, never a verdict, and no retry.
func TestClassifySetupFailed(t *testing.T) {
	cp := loadCapture(t, "good")
	line := guest.SetupFailedMarker + " nonce=" + cp.nonce + " mounting the host's root file system (9p tag firstbad-root): no such device"
	out, _, err := feed(ClassifyConfig{Nonce: cp.nonce, Runs: 1, GuestTest: true, Timeout: time.Minute, BootTimeout: time.Minute},
		append(cp.events(true)[:40], Event{Kind: EvLine, Line: line, At: time.Second}))
	if !outcome.IsInfra(err) || outcome.CanRetry(err) || len(out.Runs) != 0 || !strings.Contains(err.Error(), "no such device") {
		t.Fatalf("want an infrastructure error naming the cause and no verdict, got %v, %v", err, brief(out))
	}
}

func TestClassifyHostTest(t *testing.T) {
	cp := loadCapture(t, "good")
	start := upTo(cp)
	res := func(n, code int) Event {
		r := guest.RunResult{Nonce: cp.nonce, Run: n, ExitCode: code}
		return Event{Kind: EvLine, Line: r.Marker(), Result: &r}
	}
	host := func(v outcome.Verdict, reason string) Event {
		return Event{Kind: EvHost, Host: Run{Verdict: v, Reason: reason}}
	}
	cases := []struct {
		name  string
		cfg   func(*ClassifyConfig)
		evs   []Event
		want  []string
		steps []Action
	}{
		{"both halves good", nil, []Event{{Kind: EvSSHReady}, res(1, 0), host(outcome.Good, "exit 0"), {Kind: EvTimer}},
			[]string{"good: guest: exit 0; host: exit 0"}, []Action{Connect, StartRun, PowerOff, Done}},
		{"host half bad", nil, []Event{{Kind: EvSSHReady}, res(1, 0), host(outcome.Bad, "exit 1"), {Kind: EvTimer}},
			[]string{"bad: guest: exit 0; host: exit 1"}, []Action{Connect, StartRun, PowerOff, Done}},
		{"host half bad while the guest hangs", nil, []Event{{Kind: EvSSHReady}, host(outcome.Bad, "hang: the host test did not finish within 1m0s")},
			[]string{"bad: hang: the host test did not finish within 1m0s"}, []Action{Connect, StartRun, Done}},
		{"guest SSH never up", nil, []Event{{Kind: EvSSHFailed, Err: errors.New("guest SSH not reachable on 127.0.0.1:2222: EOF")}},
			[]string{"skip: guest SSH not reachable on 127.0.0.1:2222: EOF"}, []Action{Connect, Done}},
		{"guest SSH never up, counted bad", func(c *ClassifyConfig) { c.UnreachableBad = true }, []Event{{Kind: EvTimer}},
			[]string{"bad: guest SSH not reachable within 1m0s"}, []Action{Connect, Done}},
		{"the guest cannot be told to start", nil, []Event{{Kind: EvSSHReady}, {Kind: EvStartFailed, Err: errors.New("the guest did not answer")}},
			[]string{"skip: guest SSH: starting the run: the guest did not answer"}, []Action{Connect, StartRun, Done}},
		{"two runs", func(c *ClassifyConfig) { c.Runs = 2 }, []Event{{Kind: EvSSHReady}, res(1, 0), host(outcome.Good, "exit 0"),
			host(outcome.Good, "exit 0"), res(2, 0), {Kind: EvTimer}},
			[]string{"good: guest: exit 0; host: exit 0", "good: guest: exit 0; host: exit 0"}, []Action{Connect, StartRun, StartRun, PowerOff, Done}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ClassifyConfig{Nonce: cp.nonce, Runs: 1, GuestTest: true, HostTest: true, Timeout: time.Minute, BootTimeout: time.Minute}
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			out, acts, err := feed(cfg, start, c.evs...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, brief(out)); diff != "" {
				t.Errorf("runs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.steps, acts); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeTarget boots fake machines that replay recorded consoles: the event
// loop, the retries and the evidence are exercised without QEMU.
type fakeTarget struct {
	boots []fakeBoot
	n     int
}

type fakeBoot struct {
	lines  []string
	result string // the result channel's content
	exit   target.Exit
}

func (f *fakeTarget) Name() string { return "fake" }

func (f *fakeTarget) Boot(ctx context.Context, b target.Boot) (target.Machine, error) {
	fb := f.boots[min(f.n, len(f.boots)-1)]
	f.n++
	m := &fakeMachine{lines: make(chan string), done: make(chan struct{}), stop: make(chan struct{}),
		console: filepath.Join(b.Dir, "console.log"), result: filepath.Join(b.Dir, "result.jsonl"), exit: fb.exit}
	if err := os.WriteFile(m.result, []byte(fb.result), 0o644); err != nil {
		return nil, err
	}
	go m.play(fb.lines)
	return m, nil
}

type fakeMachine struct {
	lines           chan string
	done, stop      chan struct{}
	once            sync.Once
	console, result string
	exit            target.Exit
}

func (m *fakeMachine) play(lines []string) {
	defer close(m.done)
	defer close(m.lines)
	log, _ := os.Create(m.console)
	defer log.Close()
	for _, l := range lines {
		fmt.Fprintln(log, l)
		select {
		case m.lines <- l:
		case <-m.stop:
			return
		}
	}
}

func (m *fakeMachine) Lines() <-chan string { return m.lines }
func (m *fakeMachine) ConsoleLog() string   { return m.console }
func (m *fakeMachine) ResultLog() string    { return m.result }
func (m *fakeMachine) HostPort(int) int     { return 0 }
func (m *fakeMachine) Stop()                { m.once.Do(func() { close(m.stop) }) }
func (m *fakeMachine) Wait() target.Exit    { <-m.done; return m.exit }

func fakeGuestTest(t *testing.T, tg target.Target) *GuestTest {
	dir := t.TempDir()
	base, test := filepath.Join(dir, "base.cpio"), filepath.Join(dir, "test.sh")
	os.WriteFile(base, nil, 0o644)
	os.WriteFile(test, []byte("exit 0\n"), 0o755)
	return &GuestTest{Target: tg, BaseInitrd: base, Test: test, Timeout: time.Minute, BootTimeout: time.Minute}
}

// The event loop, fed a recorded console by a fake machine, gives the
// verdict, and keeps the console as evidence; with the result channel
// empty, the console's marker is the result.
func TestBootLoopReplaysConsoles(t *testing.T) {
	for _, port := range []bool{true, false} {
		cp := loadCapture(t, "bad")
		result := ""
		if port {
			data, _ := os.ReadFile("testdata/bad.result")
			result = string(data)
		}
		gt := fakeGuestTest(t, &fakeTarget{boots: []fakeBoot{{lines: cp.lines, result: result}}})
		// The agent's nonce is the capture's: the fake ignores the one
		// the boot made, so the classifier is told the recorded one.
		gt.nonce = func() string { return cp.nonce }
		out, err := gt.Run(context.Background(), Kernel{Image: "bzImage"}, "c0ffee", 1, 1, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"bad: exit 3"}, brief(out)); diff != "" {
			t.Errorf("port %v: runs (-want +got):\n%s", port, diff)
		}
		if data, err := os.ReadFile(out.ConsoleLog); err != nil || !strings.Contains(string(data), "FIRSTBAD-RESULT") {
			t.Errorf("the console log is not kept as evidence: %v", err)
		}
	}
}

// A boot cut short by a lost connection to the VM host is booted once
// more on a fresh connection; the second boot's verdict stands.
func TestBootLoopRetriesLostConnection(t *testing.T) {
	good := loadCapture(t, "good")
	res, _ := os.ReadFile("testdata/good.result")
	lost := fmt.Errorf("%w: vmhost: EOF", target.ErrConnLost)
	tg := &fakeTarget{boots: []fakeBoot{
		{lines: upToLines(good), exit: target.Exit{Err: outcome.Retryable("connection", lost), Code: -1}},
		{lines: good.lines, result: string(res)},
	}}
	gt := fakeGuestTest(t, tg)
	gt.nonce = func() string { return good.nonce }
	out, err := gt.Run(context.Background(), Kernel{Image: "bzImage"}, "c0ffee", 1, 1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if tg.n != 2 || len(out.Runs) != 1 || out.Runs[0].Verdict != outcome.Good {
		t.Fatalf("boots %d, runs %v", tg.n, brief(out))
	}
}

func upToLines(cp capture) []string {
	for i, l := range cp.lines {
		if strings.Contains(l, guest.StartMarker) {
			return cp.lines[:i+1]
		}
	}
	return cp.lines
}
