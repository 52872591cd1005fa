package pipeline

import (
	"context"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"
)

// KernelStep evaluates a commit of a kernel tree: build (or take from the
// artifact cache), boot on the target, run the guest test.
type KernelStep struct {
	Build *KernelBuild
	Test  *GuestTest
}

// Evaluate implements Pipeline.
func (k *KernelStep) Evaluate(ctx context.Context, req Request) (Outcome, error) {
	var out Outcome
	req.stage("build")
	res, err := k.Build.Build(ctx, req.Commit, req.EvidenceDir)
	if err != nil {
		return out, outcome.InfraErr("build", err)
	}
	d := time.Duration(res.BuildS * float64(time.Second))
	out.Build, out.BuildLog = &d, res.Log
	out.Toolchain, out.BuildFixes = res.Toolchain, res.Fixes
	if res.Verdict != "ok" {
		out.Runs = []Run{{Verdict: outcome.Skip, ExitCode: -1, Reason: res.Reason}}
		return out, nil
	}
	out.Kernel = res.Kernel
	if req.Tested != nil {
		if runs, ok := req.Tested(res.Kernel); ok {
			out.Runs = runs
			return out, nil
		}
	}
	req.stage("boot+test")
	kernel := Kernel{Image: res.Kernel, Modules: res.Modules, Release: res.Release, Config: res.ConfigPath}
	g, err := k.Test.Run(ctx, kernel, req.Commit, req.Step, req.Repeat, req.EvidenceDir)
	if err != nil && ctx.Err() == nil && outcome.CanRetry(err) {
		// QEMU's own failure: once more, then it is the machine's problem.
		g, err = k.Test.Run(ctx, kernel, req.Commit, req.Step, req.Repeat, req.EvidenceDir)
	}
	if err != nil {
		return out, err
	}
	out.Boot, out.ConsoleLog, out.Runs, out.GuestRoot = &g.Boot, g.ConsoleLog, g.Runs, g.GuestRoot
	for i := range out.Runs {
		if out.Runs[i].Output == "" {
			out.Runs[i].Output = g.ConsoleLog
		}
	}
	return out, nil
}
