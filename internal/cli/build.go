package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstbad/firstbad/internal/artstore"
	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
)

func buildCmd(g *globals) *cobra.Command {
	var repo, machine string
	var kf kbuildFlags
	c := &cobra.Command{
		Use:   "build --repo DIR REF",
		Short: "configure, verify and build one kernel commit (as a bisect step does)",
		Long: `build checks REF out in firstbad's clone, assembles its config (base config,
firstbad's required fragment, your --kconfig fragments; make olddefconfig),
verifies every required option, and builds bzImage incrementally in a persistent
build dir with ccache, or takes it from the artifact cache.

Exit codes: 0 built, 1 the commit cannot be built (a skip: compile error or a
required option unavailable), 2 usage or input error, 3 infrastructure error.`,
		Args: cobra.ExactArgs(1),
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			opts, err := kf.options()
			if err != nil {
				return err
			}
			if err := checkMachine(machine); err != nil {
				return err
			}
			opts.Target = kbuild.QEMUTarget(machine)
			s, err := g.session(true)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(g.stderr)
			defer stop()
			sha, wt, err := g.checkout(ctx, repo, args[0])
			if err != nil {
				return err
			}
			defer wt.Release()
			logDir := filepath.Join(g.stateDir, "builds", time.Now().UTC().Format("20060102-150405")+"-"+sha[:12])
			res, err := kf.kernelBuild(g, wt, opts, s.Log).Build(ctx, sha, logDir)
			if err != nil {
				return stepErr(ctx, err)
			}
			if g.json {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				printBuild(g, sha, res)
			}
			if res.Verdict != "ok" {
				return status(outcome.ExitNoCulprit)
			}
			return nil
		}),
	}
	c.Flags().StringVar(&repo, "repo", ".", "the kernel repository (never written to)")
	machineFlag(c.Flags(), &machine)
	kf.register(c)
	return c
}

func printBuild(g *globals, sha string, r *kbuild.Result) {
	w := g.stdout
	if r.Verdict != "ok" {
		fmt.Fprintf(w, "commit %s cannot be built (skip): %s\nbuild log: %s\n", sha[:12], r.Reason, r.Log)
		return
	}
	how := fmt.Sprintf("built in %.1f s (%d objects compiled, %d from ccache)", r.BuildS, r.Compiled, r.CcacheHits)
	if r.RemoteHits > 0 {
		how = strings.TrimSuffix(how, ")") + fmt.Sprintf(", %d of them from the team ccache)", r.RemoteHits)
	}
	if r.Cluster != "" {
		how += "\ncluster: " + r.Cluster
	}
	switch {
	case r.SameAs != "":
		how = fmt.Sprintf("the kernel of %.12s, from the artifact cache (%.1f s): nothing its build read changed since", r.SameAs, r.BuildS)
	case r.Cached:
		how = fmt.Sprintf("from the artifact cache (%.1f s)", r.BuildS)
	}
	fmt.Fprintf(w, "kernel:  %s\nkey:     %s\nversion: %s (%s)\n%s\nconfig verified: every required option holds\nbuild log: %s\n",
		r.Kernel, r.Key, r.Version, r.Release, how, r.Log)
}

// checkout resolves ref in the user's repository (read only) and takes a
// checkout slot in firstbad's clone of it.
func (g *globals) checkout(ctx context.Context, repo, ref string) (string, *git.Worktree, error) {
	src, err := git.Open(ctx, repo)
	if err != nil {
		return "", nil, outcome.InputErr("%v", err)
	}
	sha, err := src.ResolveCommit(ctx, ref)
	if err != nil {
		return "", nil, outcome.InputErr("unknown ref %q in %s", ref, repo)
	}
	clone, err := git.EnsureClone(ctx, src, g.cacheDir)
	if err != nil {
		return "", nil, outcome.InfraErr("clone", err)
	}
	if err := clone.Sync(ctx, sha); err != nil {
		return "", nil, outcome.InfraErr("clone", err)
	}
	wt, err := clone.Worktree(ctx, sha)
	return sha, wt, outcome.InfraErr("checkout", err)
}

// kernelBuild is the build stage for a checkout, with these flags.
func (k *kbuildFlags) kernelBuild(g *globals, wt *git.Worktree, opts kbuild.Options, log *slog.Logger) *pipeline.KernelBuild {
	b := &kbuild.Builder{CacheDir: g.cacheDir, CacheSize: k.cacheSize, Log: log}
	if k.store != "" {
		b.Store, _ = artstore.New(k.store) // options() checked it
	}
	return &pipeline.KernelBuild{Worktree: wt, Opts: opts, Builder: b}
}

// stepErr is a failed build or test: interrupted if the context was
// cancelled, else the error with its kind.
func stepErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return outcome.ErrInterrupted
	}
	return err
}
