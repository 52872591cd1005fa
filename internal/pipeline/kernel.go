package pipeline

import (
	"context"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
)

// KernelBuild is the build stage of a kernel step: check the commit out in
// firstbad's clone and build it (or take it from the artifact cache).
// `firstbad build` and bisect steps share it.
type KernelBuild struct {
	Worktree *git.Worktree
	Builder  *kbuild.Builder
	Opts     kbuild.Options
}

// Build builds commit, keeping its log under evidenceDir. Input problems
// and the machine's come back as outcome errors of their kind; a commit
// that cannot be built is a Result with Verdict "skip".
func (k *KernelBuild) Build(ctx context.Context, commit, evidenceDir string) (*kbuild.Result, error) {
	if err := k.Worktree.Checkout(ctx, commit); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, outcome.InfraErr("checkout", err)
	}
	info, err := k.Worktree.Info(ctx, commit, false)
	if err != nil {
		return nil, outcome.InfraErr("checkout", err)
	}
	return k.Builder.Build(ctx, kbuild.Request{Src: k.Worktree.Dir, Commit: commit, Tree: info.Tree, Opts: k.Opts, LogDir: evidenceDir})
}
