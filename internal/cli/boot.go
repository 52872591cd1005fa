package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/spf13/cobra"

	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/report"
	"github.com/firstbad/firstbad/internal/target"
)

// Exit codes of test and boot: git bisect run's, so `git bisect run
// firstbad test ...` works.
const (
	TestGood  = 0
	TestBad   = 1
	TestSkip  = 125
	TestInput = 128
	TestInfra = 129
)

const testExitHelp = `Exit codes (as git bisect run expects): 0 good, 1 bad, 125 skip (cannot tell:
build or boot failed), 128 usage or input error, 129 infrastructure error.`

// guestFlags are the boot-and-test options shared by boot, test and run.
type guestFlags struct {
	test        string
	files       []string
	timeout     time.Duration
	bootTimeout time.Duration
	repeat      int
	rebootEach  bool
	bootFailure string
	crashMatch  string
	accel       string
	memory      int
	cpus        int
	appendLine  string
	hostTest    string
	forwards    []int
	unreachable string
	target      string
	sshConfig   string
	takeOver    bool
}

// hasTest says whether a guest or a host test was given.
func (gf *guestFlags) hasTest() bool { return gf.test != "" || gf.hostTest != "" }

// register adds the flags; withRunFlags adds --timeout and --repeat too
// (run has its own, shared with --exec).
func (gf *guestFlags) register(c *cobra.Command, withRunFlags bool) {
	f := c.Flags()
	f.StringVar(&gf.test, "guest-test", "", "script run with /bin/sh inside the guest (exit 0 good, 1-127 bad, 125 skip)")
	f.StringArrayVar(&gf.files, "guest-file", nil, "extra file for the guest, SRC[:DEST]; repeatable")
	if withRunFlags {
		f.DurationVar(&gf.timeout, "timeout", pipeline.DefaultTestTimeout, "deadline for one run of the guest test; overrunning is bad (hang)")
		f.IntVar(&gf.repeat, "repeat", 1, "runs of the guest test per step, in one boot (see --reboot-each)")
	}
	f.DurationVar(&gf.bootTimeout, "boot-timeout", pipeline.DefaultBootTimeout, "deadline from QEMU start to the guest agent's start marker")
	f.BoolVar(&gf.rebootEach, "reboot-each", false, "boot afresh for every run of --repeat")
	f.StringVar(&gf.bootFailure, "boot-failure", "skip", "what a kernel that does not boot means: skip or bad")
	f.StringVar(&gf.crashMatch, "crash-match", "", "regexp: a crash whose title does not match is a skip, not bad")
	f.StringVar(&gf.accel, "accel", "auto", "QEMU accelerator: kvm, tcg, or auto (probe KVM once, fall back to TCG)")
	f.IntVar(&gf.memory, "memory", 512, "guest memory in MiB")
	f.IntVar(&gf.cpus, "cpus", 1, "guest CPUs")
	f.StringVar(&gf.appendLine, "append", "", "extra kernel command line")
	f.StringVar(&gf.hostTest, "host-test", "", "executable run on the host once the guest is up, reaching it with $FIRSTBAD_SSH (alone or with --guest-test, concurrently)")
	f.IntSliceVar(&gf.forwards, "forward", nil, "guest TCP port the host test reaches at 127.0.0.1:$FIRSTBAD_GUEST_PORT_<port>; repeatable")
	f.StringVar(&gf.unreachable, "unreachable", "skip", "what a guest SSH never reaches means for --host-test: skip or bad")
	f.StringVar(&gf.target, "target", "qemu", "where kernels boot: qemu (local), ssh://[user@]host[:port][?dir=DIR&qemu=BINARY] (QEMU on a VM host), or libvirt:///DOMAIN, libvirt://[user@]host/DOMAIN[?uri=URI&dir=DIR] (an existing libvirt domain)")
	f.StringVar(&gf.sshConfig, "ssh-config", "", "ssh_config for --target ssh:// and libvirt://HOST (default ~/.ssh/config)")
	f.BoolVar(&gf.takeOver, "take-over-domain", false, "let a libvirt target stop its domain even if it runs something else (its definition is restored at the end)")
}

// config checks the flags and turns them into a kernel step's config.
func (gf *guestFlags) config() (pipeline.KernelConfig, error) {
	var none pipeline.KernelConfig
	if gf.test != "" {
		fi, err := os.Stat(gf.test)
		if err != nil || fi.IsDir() {
			return none, usage("--guest-test %s: not a readable file", gf.test)
		}
	}
	if gf.bootFailure != "skip" && gf.bootFailure != "bad" {
		return none, usage("--boot-failure must be skip or bad")
	}
	switch gf.accel {
	case "kvm", "tcg", "auto":
	default:
		return none, usage("--accel must be kvm, tcg or auto")
	}
	if gf.repeat < 1 {
		return none, usage("--repeat must be at least 1")
	}
	if gf.crashMatch != "" {
		if _, err := regexp.Compile(gf.crashMatch); err != nil {
			return none, usage("--crash-match: %v", err)
		}
	}
	var host *pipeline.HostTest
	if gf.hostTest != "" {
		abs, err := filepath.Abs(gf.hostTest)
		if err != nil {
			return none, err
		}
		if err := pipeline.CheckHostTest(abs); err != nil {
			return none, usage("%v", err)
		}
		if gf.unreachable != "skip" && gf.unreachable != "bad" {
			return none, usage("--unreachable must be skip or bad")
		}
		for _, p := range gf.forwards {
			if p < 1 || p > 65535 || p == guest.SSHPort {
				return none, usage("--forward %d: give a guest TCP port other than 22 (SSH is always forwarded)", p)
			}
		}
		host = &pipeline.HostTest{File: abs, Forwards: gf.forwards, UnreachableBad: gf.unreachable == "bad"}
	} else if len(gf.forwards) > 0 {
		return none, usage("--forward is for --host-test")
	}
	if _, err := target.ParseTarget(gf.target, target.Options{}); err != nil {
		return none, usage("%v", err)
	}
	if gf.sshConfig != "" {
		abs, err := filepath.Abs(gf.sshConfig)
		if err != nil {
			return none, err
		}
		if _, err := os.Stat(abs); err != nil {
			return none, usage("--ssh-config: %v", err)
		}
		gf.sshConfig = abs
	}
	var files []guest.File
	for _, a := range gf.files {
		f, err := guest.ParseFile(a)
		if err != nil {
			return none, usage("%v", err)
		}
		files = append(files, f)
	}
	return pipeline.KernelConfig{GuestTest: gf.test, Files: files, Timeout: gf.timeout, BootTimeout: gf.bootTimeout,
		RebootEach: gf.rebootEach, BootFailureBad: gf.bootFailure == "bad", CrashMatch: gf.crashMatch, Accel: gf.accel,
		MemMiB: gf.memory, CPUs: gf.cpus, Append: gf.appendLine, Host: host, Target: gf.target, SSHConfig: gf.sshConfig,
		TakeOver: gf.takeOver}, nil
}

// guestTest checks the host and assembles the boot-and-test stage.
func (gf *guestFlags) guestTest(g *globals, shell bool, log *slog.Logger) (*pipeline.GuestTest, error) {
	kc, err := gf.config()
	if err != nil {
		return nil, err
	}
	gt, err := pipeline.NewGuestTest(kc, g.cacheDir, log)
	switch {
	case outcome.IsInput(err):
		return nil, usage("%v", err)
	case err != nil:
		return nil, &exitError{code: ExitInfra, err: err}
	}
	gt.Shell = shell
	return gt, nil
}

// testResult is the JSON of test and boot.
type testResult struct {
	Verdict    string         `json:"verdict"`
	Reason     string         `json:"reason"`
	Crash      *string        `json:"crash"`
	ExitCode   int            `json:"exit_code"`
	BootS      *float64       `json:"boot_s"`
	TestS      float64        `json:"test_s"`
	BuildS     *float64       `json:"build_s,omitempty"`
	Kernel     string         `json:"kernel,omitempty"`
	ConsoleLog string         `json:"console_log"`
	BuildLog   string         `json:"build_log,omitempty"`
	Runs       []testRunEntry `json:"runs"`
}

type testRunEntry struct {
	Verdict  string  `json:"verdict"`
	ExitCode int     `json:"exit_code"`
	Duration float64 `json:"duration_s"`
	Crash    *string `json:"crash"`
	Reason   string  `json:"reason"`
}

// printOutcome prints a boot or test outcome and returns its exit code.
func (g *globals) printOutcome(out pipeline.Outcome) error {
	v, _ := pipeline.Combine(out.Runs)
	res := testResult{Verdict: v.String(), ConsoleLog: out.ConsoleLog, BuildLog: out.BuildLog, Kernel: out.Kernel, Runs: []testRunEntry{}}
	res.BootS, res.BuildS = pipeline.Seconds(out.Boot), pipeline.Seconds(out.Build)
	for i, r := range out.Runs {
		res.TestS += r.Duration.Seconds()
		var crash *string
		if r.Crash != "" {
			c := r.Crash
			crash = &c
			res.Crash = crash
		}
		res.Runs = append(res.Runs, testRunEntry{Verdict: r.Verdict.String(), ExitCode: r.ExitCode, Duration: r.Duration.Seconds(), Crash: crash, Reason: r.Reason})
		if i == 0 || r.Verdict == v {
			res.Reason, res.ExitCode = r.Reason, r.ExitCode
		}
	}
	if len(out.Runs) == 0 {
		res.Verdict, res.Reason = "good", "booted"
		v = outcome.Good
	}
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.stdout, "verdict: %s (%s)\n", res.Verdict, report.Clean(res.Reason))
		if res.Crash != nil {
			fmt.Fprintf(g.stdout, "crash:   %s\n", report.Clean(*res.Crash))
		}
		if res.BuildS != nil {
			fmt.Fprintf(g.stdout, "build:   %.1f s (%s)\n", *res.BuildS, res.BuildLog)
		}
		if res.BootS != nil {
			fmt.Fprintf(g.stdout, "boot:    %.2f s\n", *res.BootS)
		}
		fmt.Fprintf(g.stdout, "test:    %.2f s in %d run(s)\nconsole: %s\n", res.TestS, len(res.Runs), res.ConsoleLog)
		if v != outcome.Good && res.ConsoleLog != "" {
			printTail(g, res.ConsoleLog, 25)
		}
	}
	switch v {
	case outcome.Good:
		return nil
	case outcome.Bad:
		return &exitError{code: TestBad}
	}
	return &exitError{code: TestSkip}
}

func printTail(g *globals, path string, n int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	fmt.Fprintln(g.stdout, "--- console (last lines) ---")
	for _, l := range lines {
		fmt.Fprintln(g.stdout, report.Clean(l))
	}
}

// testExit maps errors of test/boot onto git bisect run's codes.
func testExit(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) && (ee.code == TestBad || ee.code == TestSkip) {
		return err
	}
	if errors.As(err, &ee) {
		switch ee.code {
		case ExitUsage:
			return &exitError{code: TestInput, err: ee.err}
		case ExitInterrupted:
			return ee
		}
		return &exitError{code: TestInfra, err: ee.err}
	}
	if outcome.IsInput(err) {
		return &exitError{code: TestInput, err: err}
	}
	return &exitError{code: TestInfra, err: err}
}

func bootCmd(g *globals) *cobra.Command {
	var gf guestFlags
	var kernel string
	var shell bool
	c := &cobra.Command{
		Use:   "boot --kernel bzImage [--guest-test FILE] [--shell]",
		Short: "boot a kernel under QEMU with firstbad's initramfs and run a guest test",
		Long:  "boot boots a given kernel image directly (qemu -kernel) with a generated busybox initramfs.\n\n" + testExitHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return testExit(func() error {
				if fi, err := os.Stat(kernel); err != nil || fi.IsDir() {
					return usage("--kernel %q: no such file", kernel)
				}
				if !isKernelImage(kernel) {
					return usage("--kernel %s is not a bzImage (no Linux boot header)", kernel)
				}
				if !gf.hasTest() && !shell {
					return usage("give --guest-test FILE or --host-test FILE, or --shell for an interactive shell")
				}
				s, err := g.session(true)
				if err != nil {
					return err
				}
				gt, err := gf.guestTest(g, shell, s.Log)
				if err != nil {
					return err
				}
				defer gt.Close()
				ctx, stop := signalContext(g.stderr)
				defer stop()
				dir := filepath.Join(g.stateDir, "boots", time.Now().UTC().Format("20060102-150405.000"))
				o, err := gt.Run(ctx, kernel, "", 0, gf.repeat, dir)
				if err != nil {
					if ctx.Err() != nil {
						return &exitError{code: ExitInterrupted, err: errors.New("interrupted")}
					}
					return &exitError{code: ExitInfra, err: err}
				}
				if shell {
					return nil
				}
				return g.printOutcome(pipeline.Outcome{Runs: o.Runs, Boot: &o.Boot, ConsoleLog: o.ConsoleLog})
			}())
		},
	}
	c.Flags().StringVar(&kernel, "kernel", "", "the kernel image (bzImage)")
	c.Flags().BoolVar(&shell, "shell", false, "an interactive busybox shell on the console instead of a test")
	gf.register(c, true)
	return c
}

// isKernelImage checks for the x86 boot protocol's "HdrS" magic.
func isKernelImage(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, 0x202); err != nil {
		return false
	}
	return string(b) == "HdrS"
}

func testCmd(g *globals) *cobra.Command {
	var gf guestFlags
	var kf kbuildFlags
	var repo string
	c := &cobra.Command{
		Use:   "test --repo DIR REF --guest-test FILE",
		Short: "build a commit, boot it, run the guest test: one bisect step",
		Long: `test evaluates one commit exactly as a bisect step does: build (or take from the
artifact cache), boot under QEMU, run the guest test, classify.

` + testExitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return testExit(func() error {
				if !gf.hasTest() {
					return usage("give the test with --guest-test FILE (in the guest) or --host-test FILE (on the host)")
				}
				opts, err := kf.options()
				if err != nil {
					return err
				}
				s, err := g.session(true)
				if err != nil {
					return err
				}
				gt, err := gf.guestTest(g, false, s.Log)
				if err != nil {
					return err
				}
				defer gt.Close()
				ctx, stop := signalContext(g.stderr)
				defer stop()
				sha, wt, err := g.checkout(ctx, repo, args[0])
				if err != nil {
					return err
				}
				defer wt.Release()
				step := &pipeline.KernelStep{Test: gt, Build: kf.kernelBuild(g, wt, opts, s.Log)}
				dir := filepath.Join(g.stateDir, "tests", time.Now().UTC().Format("20060102-150405.000")+"-"+sha[:12])
				out, err := step.Evaluate(ctx, pipeline.Request{Commit: sha, Repeat: gf.repeat, EvidenceDir: dir})
				if err != nil {
					return stepErr(ctx, err)
				}
				return g.printOutcome(out)
			}())
		},
	}
	c.Flags().StringVar(&repo, "repo", ".", "the kernel repository (never written to)")
	gf.register(c, true)
	kf.register(c)
	return c
}
