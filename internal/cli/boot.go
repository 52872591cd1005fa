package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/spf13/cobra"

	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/report"
)

const testExitHelp = `Exit codes (as git bisect run expects): 0 good, 1 bad, 125 skip (cannot tell:
build or boot failed), 128 usage or input error, 129 infrastructure error.`

// stepEnv is what boot and test share: checked flags, the session's
// checks, a signal context, and the boot-and-test stage; done ends them.
func (g *globals) stepEnv(gf *guestFlags, shell bool) (context.Context, *pipeline.GuestTest, func(), error) {
	kc, err := gf.config()
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := g.session(true)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signalContext(g.stderr)
	gt, err := g.tester(ctx, kc, shell, s.Log)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return ctx, gt, func() { gt.Close(); stop() }, nil
}

func bootCmd(g *globals) *cobra.Command {
	var gf guestFlags
	var kernel string
	var shell bool
	c := &cobra.Command{
		Use:         "boot --kernel bzImage [--guest-test FILE] [--shell]",
		Short:       "boot a kernel under QEMU with firstbad's initramfs and run a guest test",
		Long:        "boot boots a given kernel image directly (qemu -kernel) with a generated busybox initramfs.\n\n" + testExitHelp,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{stepCommand: "1"},
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			if fi, err := os.Stat(kernel); err != nil || fi.IsDir() {
				return outcome.InputErr("--kernel %q: no such file", kernel)
			}
			if !isKernelImage(kernel) {
				return outcome.InputErr("--kernel %s is not a bzImage (no Linux boot header)", kernel)
			}
			kernel, _ = filepath.Abs(kernel) // QEMU may run elsewhere (virtiofs: in the boot dir)
			if shell && gf.init == guest.InitSystem {
				return outcome.InputErr("--shell opens firstbad's shell on the console: it does not go with --init system (reach the booted system with --host-test and $FIRSTBAD_SSH)")
			}
			if !gf.hasTest() && !shell {
				return outcome.InputErr("give --guest-test FILE or --host-test FILE, or --shell for an interactive shell")
			}
			ctx, gt, done, err := g.stepEnv(&gf, shell)
			if err != nil {
				return err
			}
			defer done()
			dir := filepath.Join(g.stateDir, "boots", time.Now().UTC().Format("20060102-150405.000"))
			o, err := gt.Run(ctx, pipeline.Kernel{Image: kernel}, "", 0, gf.repeat, dir)
			if err != nil {
				return stepErr(ctx, err)
			}
			if shell {
				return nil
			}
			return g.printOutcome(pipeline.Outcome{Runs: o.Runs, Boot: &o.Boot, ConsoleLog: o.ConsoleLog, GuestRoot: o.GuestRoot})
		}),
	}
	c.Flags().StringVar(&kernel, "kernel", "", "the kernel image (bzImage)")
	c.Flags().BoolVar(&shell, "shell", false, "an interactive busybox shell on the console instead of a test")
	gf.register(c, true)
	return c
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
		Args:        cobra.ExactArgs(1),
		Annotations: map[string]string{stepCommand: "1"},
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			if !gf.hasTest() {
				return outcome.InputErr("give the test with --guest-test FILE (in the guest) or --host-test FILE (on the host)")
			}
			opts, err := kf.options()
			if err != nil {
				return err
			}
			ctx, gt, done, err := g.stepEnv(&gf, false)
			if err != nil {
				return err
			}
			defer done()
			sha, wt, err := g.checkout(ctx, repo, args[0])
			if err != nil {
				return err
			}
			defer wt.Release()
			if opts, err = gt.BuildOptions(ctx, opts); err != nil {
				return err
			}
			step := &pipeline.KernelStep{Test: gt, Build: kf.kernelBuild(g, wt, opts, gt.Log)}
			dir := filepath.Join(g.stateDir, "tests", time.Now().UTC().Format("20060102-150405.000")+"-"+sha[:12])
			out, err := step.Evaluate(ctx, pipeline.Request{Commit: sha, Repeat: gf.repeat, EvidenceDir: dir})
			if err != nil {
				return stepErr(ctx, err)
			}
			return g.printOutcome(out)
		}),
	}
	c.Flags().StringVar(&repo, "repo", ".", "the kernel repository (never written to)")
	gf.register(c, true)
	kf.register(c)
	return c
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
	GuestRoot  string         `json:"guest_root,omitempty"`
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
	res := testResult{Verdict: v.String(), ConsoleLog: out.ConsoleLog, BuildLog: out.BuildLog, Kernel: out.Kernel, GuestRoot: out.GuestRoot, Runs: []testRunEntry{}}
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
		if res.GuestRoot != "" {
			fmt.Fprintf(g.stdout, "root:    %s\n", res.GuestRoot)
		}
		fmt.Fprintf(g.stdout, "test:    %.2f s in %d run(s)\nconsole: %s\n", res.TestS, len(res.Runs), res.ConsoleLog)
		if v != outcome.Good && res.ConsoleLog != "" {
			printTail(g, res.ConsoleLog, 25)
		}
	}
	if code := outcome.VerdictExit(v); code != 0 {
		return status(code)
	}
	return nil
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
