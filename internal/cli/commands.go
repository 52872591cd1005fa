package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/report"
	"github.com/firstbad/firstbad/internal/session"
)

// runFlags are run's own flags beyond the session's input.
type runFlags struct {
	in         session.Input
	fresh      bool
	maxFails   int
	confirm    bool
	flaky      bool
	configFile string
	gf         guestFlags
	kf         kbuildFlags
}

const runHelp = `run bisects the commits reachable from --bad and from none of --good.

With --exec, CMD runs with sh -c in firstbad's checkout of each candidate, with
git bisect run's exit codes: 0 good, 125 skip, 1-127 (but 125) bad, 128 or more
aborts the bisect. 126/127 on the first step are checked against the good commit,
as git does (command not found). CMD sees FIRSTBAD_COMMIT, FIRSTBAD_STEP and
FIRSTBAD_RUN (the run number within the step) in its environment.

--term-old/--term-new rename the states (exit 0 = old). --fix finds the commit
that fixed something: give --bad the old, broken commit and --good the new,
fixed one; CMD keeps its natural meaning (0 = works).

With --guest-test, each candidate kernel is configured (--base-config, firstbad's
required options, your --kconfig fragments), built incrementally with ccache (or
taken from the artifact cache), booted under QEMU with a busybox initramfs, and
FILE runs inside the guest with the same exit codes. A kernel that fails to build
or boot is a skip; a crash during the test is bad.

Paths after -- limit the bisect to commits touching them, as in git bisect start.

For a flaky reproducer use --strategy bayes (--flaky): it keeps a posterior over
the first bad commit from every run (a pass never rules a commit out), learns how
often the test fails on bad commits, decides how many runs each step gets (several
per build when builds are dear), and stops when the answer reaches --confidence
(0.99), reporting that probability and the runner-ups. Endpoint checks are
observations then, not a stop.

` + exitCodesHelp

func runCmd(g *globals) *cobra.Command {
	var rf runFlags
	c := &cobra.Command{
		Use:   "run --repo DIR --good REF [--good REF ...] --bad REF (--exec 'CMD' | --guest-test FILE) [-- PATH...]",
		Short: "bisect: find the first bad commit",
		Long:  runHelp,
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			in, err := rf.input(cmd, args)
			if err != nil {
				return err
			}
			s, err := g.session(true)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(g.stderr)
			defer stop()
			p, _, err := session.Resolve(ctx, in)
			if err != nil {
				return err
			}
			if p.Kernel != nil {
				// Missing QEMU or busybox, a dynamic firstbad or an
				// unreachable VM host is the user's to fix before a
				// run exists.
				if s.Tester, err = g.tester(ctx, *p.Kernel, false, s.Log); err != nil {
					return err
				}
				defer s.Tester.Close()
			}
			res, err := s.Start(ctx, p, rf.fresh)
			return g.finish(ctx, s, res, err)
		}),
	}
	rf.register(c)
	return c
}

// register adds run's flags; those the kernel pipeline adds are marked
// kernel-only.
func (rf *runFlags) register(c *cobra.Command) {
	f := c.Flags()
	in := &rf.in
	f.StringVar(&in.Repo, "repo", ".", "the repository to bisect (never written to)")
	f.StringArrayVar(&in.Good, "good", nil, "a good (old) commit; repeatable")
	f.StringVar(&in.Bad, "bad", "", "the bad (new) commit")
	f.StringVar(&in.Exec, "exec", "", "reproducer: shell command run in the checkout of each candidate")
	f.StringVar(&in.TermOld, "term-old", "", "name of the old state (default good)")
	f.StringVar(&in.TermNew, "term-new", "", "name of the new state (default bad)")
	f.BoolVar(&in.Fix, "fix", false, "find the commit that fixed something (terms broken/fixed)")
	f.DurationVar(&in.Timeout, "timeout", 0, "deadline for one run of the reproducer; overrunning counts as bad (\"timeout\")")
	f.IntVar(&in.Repeat, "repeat", 1, "runs of the reproducer per step: any bad run makes the step bad")
	f.BoolVar(&in.FirstParent, "first-parent", false, "follow only the first parent of merges")
	f.StringArrayVar(&in.Skips, "skip", nil, "a commit (REV) or range (A..B) known to be untestable; repeatable")
	f.StringVar(&in.FromLog, "from-log", "", "start from an existing (partial) git bisect log")
	f.BoolVar(&rf.fresh, "new", false, "start a new run even if an unfinished one has the same arguments")
	f.StringVar(&in.EndpointCheck, "endpoint-check", "", "verify the endpoints: bad (the bad one first: its crash or exit code is the run's signature; the good ones lazily; default for kernel runs), lazy (only when the answer hinges on one; default for --exec), upfront, or off")
	f.StringVar(&rf.configFile, "config", "", "read options from a TOML file (keys are flag names); flags override it")
	f.BoolVar(&rf.confirm, "confirm", true, "retest the culprit and its parent after the search (--confirm=false: not)")
	f.StringVar(&in.RevertCheck, "revert-check", "on", "revert the culprit on the bad commit (or --revert-on) and test that: on or off")
	f.StringVar(&in.RevertOn, "revert-on", "", "the tip the revert check reverts the culprit on (default: the bad commit), e.g. today's mainline")
	f.BoolVar(&in.RetestSameKernel, "retest-same-kernel", false, "boot and test a commit whose kernel an earlier step tested (same artifact: its changes touch nothing the build read) instead of taking that step's verdict; for a test that reads $FIRSTBAD_COMMIT or is flaky")
	f.BoolVar(&in.AcceptSuspect, "accept-suspect", false, "call a flagged culprit (a merge, documentation only, a revert that does not help, ...) found, not suspect")
	f.StringVar(&in.Strategy, "strategy", "", "search strategy: fast (kernel runs, the default there: one test per distinct kernel, commits that change no file the builds read are never built), classic (git bisect's choices; the default for --exec and with paths or --retest-same-kernel) or bayes (for flaky tests: a posterior over the culprit, repeats where they pay)")
	f.BoolVar(&rf.flaky, "flaky", false, "short for --strategy bayes")
	f.BoolVar(&in.NoSubmodules, "no-submodules", false, "leave submodules empty in firstbad's checkout (default: checked out from your repository's own submodule clones)")
	f.StringVar(&in.FalseAlarm, "false-alarm-rate", "", "bayes: probability that a run fails on a good commit, or auto: learned from the runs (default auto)")
	f.Float64Var(&in.Confidence, "confidence", 0, "bayes: stop when the most likely culprit has this posterior probability (default 0.99)")
	f.IntVar(&in.MaxRuns, "max-runs", 0, "bayes: stop after this many test runs, outcome budget-exhausted (default 40 per halving of the range)")
	before := flagNames(c)
	f.IntVar(&rf.maxFails, "max-build-failures", session.DefaultMaxBuildFailures, "stop after this many search steps in a row whose kernel did not build (0: never)")
	rf.gf.register(c, false)
	rf.kf.register(c)
	markKernelFlags(c, before)
}

// input turns run's flags (and its --config file) into the session's
// input, checked once.
func (rf *runFlags) input(cmd *cobra.Command, args []string) (session.Input, error) {
	in := rf.in
	if rf.configFile != "" {
		if err := applyConfigFile(cmd, rf.configFile); err != nil {
			return in, err
		}
		in = rf.in
	}
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		if dash > 0 {
			return in, outcome.InputErr("unexpected arguments %q (paths go after --)", args[:dash])
		}
		in.Paths = args[dash:]
	} else if len(args) > 0 {
		return in, outcome.InputErr("unexpected arguments %q (paths go after --)", args)
	}
	switch {
	case in.Repeat < 1 || in.Repeat > maxRepeat:
		return in, outcome.InputErr("--repeat must be between 1 and %d", maxRepeat)
	case in.Timeout < 0:
		return in, outcome.InputErr("--timeout must be positive (it bounds one run of the reproducer)")
	}
	if rf.gf.hasTest() {
		kc, err := rf.kernelConfig(in)
		if err != nil {
			return in, err
		}
		in.Kernel = &kc
	} else if err := kernelOnly(cmd); err != nil {
		return in, err
	}
	if cmd.Flags().Changed("confirm") {
		in.Confirm = &rf.confirm
	}
	if cmd.Flags().Changed("max-build-failures") {
		in.MaxBuildFailures = &rf.maxFails
	}
	if rf.flaky {
		if in.Strategy != "" && in.Strategy != "bayes" {
			return in, outcome.InputErr("--flaky means --strategy bayes, not %s", in.Strategy)
		}
		in.Strategy = "bayes"
	}
	return in, nil
}

// kernelConfig is a kernel run's step config from the guest and build flags.
func (rf *runFlags) kernelConfig(in session.Input) (pipeline.KernelConfig, error) {
	rf.gf.timeout, rf.gf.repeat = in.Timeout, in.Repeat
	if rf.gf.timeout == 0 {
		rf.gf.timeout = pipeline.DefaultTestTimeout
	}
	kc, err := rf.gf.config()
	if err != nil {
		return kc, err
	}
	if kc.Build, err = rf.kf.options(); err != nil {
		return kc, err
	}
	kc.CacheSize, kc.ArtifactStore = rf.kf.cacheSize, rf.kf.store
	return kc, nil
}

func resumeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resume [RUN]",
		Short: "continue an interrupted run (default: the most recent unfinished one)",
		Long:  "resume continues a run from its journal: no finished step runs again.\n\n" + exitCodesHelp,
		Args:  cobra.MaximumNArgs(1),
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			s, id, err := g.runSession(args, true, true)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(g.stderr)
			defer stop()
			closeTester, err := g.runTester(ctx, s, id)
			if err != nil {
				return err
			}
			defer closeTester()
			res, err := s.Resume(ctx, id)
			return g.finish(ctx, s, res, err)
		}),
	}
}

// runTester gives s the boot-and-test stage a kernel run needs, made from
// the run's own parameters; the returned func closes it.
func (g *globals) runTester(ctx context.Context, s *session.Session, id string) (func(), error) {
	p, err := s.Params(id)
	if err != nil || p.Kernel == nil {
		return func() {}, err
	}
	if s.Tester, err = g.tester(ctx, *p.Kernel, false, s.Log); err != nil {
		return nil, err
	}
	return func() { s.Tester.Close() }, nil
}

// runSession is the session and the run (RUN, or the default one) a
// command works on.
func (g *globals) runSession(args []string, write, unfinished bool) (*session.Session, string, error) {
	s, err := g.session(write)
	if err != nil {
		return nil, "", err
	}
	id, err := runArg(s, args, unfinished)
	return s, id, err
}

// runArg is the RUN argument, or the default run.
func runArg(s *session.Session, args []string, unfinished bool) (string, error) {
	if len(args) == 1 {
		if _, err := os.Stat(s.RunDir(args[0])); err != nil || args[0] == "" {
			return "", outcome.InputErr("no run %q in %s (see firstbad list)", args[0], s.RunsDir())
		}
		return args[0], nil
	}
	return s.Latest(unfinished)
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [RUN]",
		Short: "show where a run stands (default: the most recent unfinished run, else the most recent)",
		Args:  cobra.MaximumNArgs(1),
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			s, id, err := g.runSession(args, false, false)
			if err != nil {
				return err
			}
			rep, err := s.Report(cmd.Context(), id)
			if err != nil {
				return err
			}
			if g.json {
				return rep.JSON(g.stdout)
			}
			done := 0
			for _, st := range rep.Steps {
				if st.Kind == "search" && st.State == "done" {
					done++
				}
			}
			fmt.Fprintf(g.stdout, "run %s: %s, %d steps done\n%s\n", rep.RunID, rep.Outcome, done, rep.Headline())
			return nil
		}),
	}
}

func listCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list the runs in the state dir",
		Args:  cobra.NoArgs,
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			s, err := g.session(false)
			if err != nil {
				return err
			}
			runs, err := s.List()
			if err != nil {
				return err
			}
			type item struct {
				RunID   string  `json:"run_id"`
				Outcome string  `json:"outcome"`
				Created string  `json:"created"`
				Repo    string  `json:"repo"`
				Culprit *string `json:"culprit"`
			}
			items := []item{}
			for _, r := range runs {
				var p session.Params
				_ = json.Unmarshal(r.Params, &p)
				it := item{RunID: r.ID, Outcome: r.Outcome, Repo: p.Repo}
				if !r.Created.IsZero() {
					it.Created = r.Created.Format("2006-01-02 15:04:05Z07:00")
				}
				if r.Culprit != "" {
					c := r.Culprit
					it.Culprit = &c
				}
				items = append(items, it)
			}
			if g.json {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"runs": items})
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tOUTCOME\tCREATED\tCULPRIT\tREPO")
			for _, it := range items {
				c := "-"
				if it.Culprit != nil {
					c = report.Short(*it.Culprit)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.RunID, it.Outcome, it.Created, c, report.Clean(it.Repo))
			}
			return tw.Flush()
		}),
	}
}

func logCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "log [RUN]",
		Short: "print a log that `git bisect replay` accepts in your repository",
		Args:  cobra.MaximumNArgs(1),
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			if !g.json {
				return g.printReport(cmd.Context(), args, "gitlog", "")
			}
			var b strings.Builder
			out := g.stdout
			g.stdout = &countWriter{w: &b}
			err := g.printReport(cmd.Context(), args, "gitlog", "")
			g.stdout = out
			if err != nil {
				return err
			}
			return json.NewEncoder(out).Encode(map[string]string{"log": b.String()})
		}),
	}
}

func reportCmd(g *globals) *cobra.Command {
	var format, out string
	c := &cobra.Command{
		Use:   "report [RUN]",
		Short: "render a run's report from its journal (md, html, json, gitlog)",
		Args:  cobra.MaximumNArgs(1),
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			if g.json {
				format = "json"
			}
			return g.printReport(cmd.Context(), args, format, out)
		}),
	}
	c.Flags().StringVar(&format, "format", "md", "md, html, json or gitlog")
	c.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of stdout")
	return c
}

// reportFormats are report's output formats.
var reportFormats = map[string]func(*report.Report, io.Writer) error{
	"md": (*report.Report).Markdown, "markdown": (*report.Report).Markdown, "html": (*report.Report).HTML,
	"json": (*report.Report).JSON, "gitlog": (*report.Report).GitLog,
}

// printReport renders a run's report in format, to stdout or to the file
// out: written whole to a temporary file and renamed, so that a failure
// (an unknown format, a damaged journal) never truncates what was there.
func (g *globals) printReport(ctx context.Context, args []string, format, out string) error {
	render, ok := reportFormats[format]
	if !ok {
		return outcome.InputErr("unknown --format %q: use md, html, json or gitlog", format)
	}
	s, id, err := g.runSession(args, false, false)
	if err != nil {
		return err
	}
	get := s.Report
	if format == "md" || format == "markdown" || format == "html" {
		get = s.FullReport
	}
	rep, err := get(ctx, id)
	if err != nil {
		return err
	}
	if out == "" {
		return render(rep, g.stdout)
	}
	return writeFile(out, func(w io.Writer) error { return render(rep, w) })
}

// writeFile writes path through a temporary file in its directory and a
// rename: readers see the old content or the new, never a part.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return outcome.InputErr("-o %s: %v", path, err)
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return outcome.InfraErr("report", err)
	}
	if err := f.Close(); err != nil {
		return outcome.InfraErr("report", err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return outcome.InfraErr("report", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return outcome.InputErr("-o %s: %v", path, err)
	}
	return nil
}
