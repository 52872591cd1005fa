package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firstbad/firstbad/internal/outcome"
)

func markCmd(g *globals) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "mark RUN COMMIT good|bad|skip --reason TEXT",
		Short: "record a human verdict on a commit of a run; firstbad resume continues from the corrected state",
		Long: `mark records your verdict on COMMIT (good, bad, skip, or the run's own terms) in
the run's journal, as evidence "marked by hand" with your reason. It overrides
what the steps said of that commit: the run is reopened, and firstbad resume
continues the search from the corrected state. The report and firstbad log
show the mark.`,
		Args: cobra.ExactArgs(3),
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			s, id, err := g.runSession(args[:1], true, false)
			if err != nil {
				return err
			}
			sha, err := s.Mark(cmd.Context(), id, args[1], args[2], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "marked %s %s in run %s; continue with: firstbad resume %s\n", sha, args[2], id, id)
			return nil
		}),
	}
	c.Flags().StringVar(&reason, "reason", "", "why (required): shown beside the verdict it overrides")
	return c
}

func retestCmd(g *globals) *cobra.Command {
	var repeat int
	c := &cobra.Command{
		Use:   "retest RUN COMMIT [--repeat N]",
		Short: "run a commit's step of a run again, in firstbad's own checkout; its runs add to the run's",
		Long: `retest runs COMMIT's step again exactly as the run does (firstbad's clone, the
run's reproducer, build and boot options), never in your repository. Its runs
are added to the run's evidence and search; the run is reopened, and firstbad
resume continues from there. Exit codes are the step commands' (0 good,
1 bad, 125 skip).`,
		Args:        cobra.ExactArgs(2),
		Annotations: map[string]string{stepCommand: "1"},
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			s, id, err := g.runSession(args[:1], true, false)
			if err != nil {
				return err
			}
			if repeat < 0 || repeat > maxRepeat {
				return outcome.InputErr("--repeat must be between 1 and %d", maxRepeat)
			}
			ctx, stop := signalContext(g.stderr)
			defer stop()
			closeTester, err := g.runTester(ctx, s, id)
			if err != nil {
				return err
			}
			defer closeTester()
			st, err := s.Retest(ctx, id, args[1], repeat)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: %s (%s); continue with: firstbad resume %s\n", st.Commit, st.Verdict, st.Reason, id)
			v, _ := outcome.ParseVerdict(st.Verdict)
			if code := outcome.VerdictExit(v); code != 0 {
				return status(code)
			}
			return nil
		}),
	}
	c.Flags().IntVar(&repeat, "repeat", 0, "runs of the reproducer (default: the run's --repeat)")
	return c
}
