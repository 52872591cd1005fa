package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// wrap gives every error a command returns its exit code, so that an
// untyped error reaching Main can only be cobra's own usage error.
func wrap(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		var ee *exitError
		switch {
		case err == nil || errors.As(err, &ee):
			return err
		case outcome.IsInput(err):
			return &exitError{code: ExitUsage, err: err}
		case errors.Is(err, session.ErrInterrupted):
			return &exitError{code: ExitInterrupted, err: err}
		case outcome.IsInfra(err):
			return &exitError{code: ExitInfra, err: err}
		}
		return &exitError{code: ExitInfra, err: err}
	}
}

func runCmd(g *globals) *cobra.Command {
	var in session.Input
	var fresh, confirm, flaky bool
	var configFile string
	var gf guestFlags
	var kf kbuildFlags
	c := &cobra.Command{
		Use:   "run --repo DIR --good REF [--good REF ...] --bad REF (--exec 'CMD' | --guest-test FILE) [-- PATH...]",
		Short: "bisect: find the first bad commit",
		Long: `run bisects the commits reachable from --bad and from none of --good.

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

` + exitCodesHelp,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if configFile != "" {
				if err := applyConfigFile(cmd, configFile); err != nil {
					return err
				}
			}
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash > 0 {
					return usage("unexpected arguments %q (paths go after --)", args[:dash])
				}
				in.Paths = args[dash:]
			} else if len(args) > 0 {
				return usage("unexpected arguments %q (paths go after --)", args)
			}
			if gf.hasTest() {
				gf.timeout, gf.repeat = in.Timeout, max(in.Repeat, 1)
				if gf.timeout == 0 {
					gf.timeout = pipeline.DefaultTestTimeout
				}
				kc, err := gf.config()
				if err != nil {
					return err
				}
				if kc.Build, err = kf.options(); err != nil {
					return err
				}
				kc.CacheSize = kf.cacheSize
				if kc.GuestTest != "" {
					if kc.GuestTest, err = filepath.Abs(kc.GuestTest); err != nil {
						return err
					}
				}
				in.Kernel = &kc
			}
			if cmd.Flags().Changed("confirm") {
				in.Confirm = &confirm
			}
			if flaky {
				if in.Strategy != "" && in.Strategy != "bayes" {
					return usage("--flaky means --strategy bayes, not %s", in.Strategy)
				}
				in.Strategy = "bayes"
			}
			s, err := g.session(true)
			if err != nil {
				return err
			}
			if in.Kernel != nil {
				// Missing QEMU or busybox, or a dynamic firstbad, is the
				// user's to fix before a run starts.
				gt, err := gf.guestTest(g, false, s.Log)
				if err != nil {
					return err
				}
				gt.Close()
			}
			ctx, stop := signalContext(g.stderr)
			defer stop()
			p, _, err := session.Resolve(ctx, in)
			if err != nil {
				return err
			}
			res, err := s.Start(ctx, p, fresh)
			return g.finish(ctx, s, res, err)
		}),
	}
	f := c.Flags()
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
	f.BoolVar(&fresh, "new", false, "start a new run even if an unfinished one has the same arguments")
	f.StringVar(&in.EndpointCheck, "endpoint-check", "lazy", "verify the endpoints: lazy (only when the answer hinges on one), upfront, or off")
	f.StringVar(&configFile, "config", "", "read options from a TOML file (keys are flag names); flags override it")
	f.BoolVar(&confirm, "confirm", false, "retest the culprit and its parent after the search (default: on for kernel runs)")
	f.StringVar(&in.Strategy, "strategy", "", "search strategy: classic (git bisect's choices, the default) or bayes (for flaky tests: a posterior over the culprit, repeats where they pay)")
	f.BoolVar(&flaky, "flaky", false, "short for --strategy bayes")
	f.Float64Var(&in.FalseAlarm, "false-alarm-rate", 0, "bayes: probability that a run fails on a good commit")
	f.Float64Var(&in.Confidence, "confidence", 0, "bayes: stop when the most likely culprit has this posterior probability (default 0.99)")
	f.IntVar(&in.MaxRuns, "max-runs", 0, "bayes: stop after this many test runs, outcome budget-exhausted (default 40 per halving of the range)")
	gf.register(c, false)
	kf.register(c)
	return c
}

func resumeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resume [RUN]",
		Short: "continue an interrupted run (default: the most recent unfinished one)",
		Long:  "resume continues a run from its journal: no finished step runs again.\n\n" + exitCodesHelp,
		Args:  cobra.MaximumNArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			s, id, err := g.runSession(args, true, true)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(g.stderr)
			defer stop()
			res, err := s.Resume(ctx, id)
			return g.finish(ctx, s, res, err)
		}),
	}
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
			return "", usage("no run %q in %s (see firstbad list)", args[0], s.RunsDir())
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
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
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
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
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
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if !g.json {
				return g.printReport(cmd.Context(), args, "gitlog", "")
			}
			var b strings.Builder
			out := g.stdout
			g.stdout = &b
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
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
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

func (g *globals) printReport(ctx context.Context, args []string, format, out string) error {
	s, id, err := g.runSession(args, false, false)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	get := s.Report
	if format == "md" || format == "markdown" || format == "html" {
		get = s.FullReport
	}
	rep, err := get(ctx, id)
	if err != nil {
		return err
	}
	w := g.stdout
	var f *os.File
	if out != "" {
		if f, err = os.Create(out); err != nil {
			return usage("-o %s: %v", out, err)
		}
		defer f.Close()
		w = f
	}
	switch format {
	case "md", "markdown":
		err = rep.Markdown(w)
	case "html":
		err = rep.HTML(w)
	case "json":
		err = rep.JSON(w)
	case "gitlog":
		err = rep.GitLog(w)
	default:
		return usage("unknown --format %q: use md, html, json or gitlog", format)
	}
	if err != nil {
		return err
	}
	if f != nil {
		return f.Close()
	}
	return nil
}
