package kbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/toolchain"
)

// errTooNew marks a build that failed because the toolchain is of a later
// era than the kernel: not the commit's fault.
var errTooNew = errors.New("the toolchain is too new for this kernel")

// compiler identifies the compiler for the artifact and config keys: the
// host's --cc (asked once per build), or the build root's identity.
func (j *buildJob) compiler() string {
	if j.tc != nil && j.tc.Dir != "" {
		return j.tc.ID
	}
	if j.cc == "" {
		j.cc = compilerVersion(j.o)
	}
	return j.cc
}

// binds are the host dirs a build in a root sees: the sources, the build
// dir, ccache's dir and, for firstbad's own checkouts, the clone they
// belong to (git metadata for the kernel's scripts).
func (j *buildJob) binds() []string {
	ccache := os.Getenv("CCACHE_DIR")
	if ccache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			ccache = filepath.Join(home, ".cache", "ccache")
		}
	}
	if ccache != "" {
		_ = os.MkdirAll(ccache, 0o755)
	}
	binds := []string{j.req.Src, j.dir, ccache}
	if clone := filepath.Dir(filepath.Dir(j.req.Src)); filepath.Dir(j.req.Src) == cachedir.CloneSlots(clone) {
		binds = append(binds, clone)
	}
	return binds
}

// fix applies the known upstream fixes whose signature the failed build's
// log shows and which the tree lacks, and says whether it applied any (the
// build then runs again).
func (j *buildJob) fix(ctx context.Context) bool {
	if j.o.NoBuildFixes {
		return false
	}
	data := logFrom(j.res.Log, j.mark)
	applied := false
	for _, f := range toolchain.MatchFixes(string(data)) {
		if j.hasFix(f) {
			continue
		}
		if err := applyFix(ctx, j.req.Src, f); err != nil {
			fmt.Fprintf(j.log, "firstbad: build fix %q (%.12s) matches but does not apply: %v\n", f.Subject, f.Commit, err)
			continue
		}
		fmt.Fprintf(j.log, "firstbad: applied build fix %q (upstream %.12s) and building again\n", f.Subject, f.Commit)
		j.fixes = append(j.fixes, f)
		j.res.Fixes = append(j.res.Fixes, fmt.Sprintf("%.12s %s", f.Commit, f.Subject))
		applied = true
	}
	return applied
}

func (j *buildJob) hasFix(f toolchain.Fix) bool {
	for _, x := range j.fixes {
		if x.Commit == f.Commit {
			return true
		}
	}
	return false
}

// applyFix applies a fix's patch to the checkout (the next checkout
// discards it), unless the tree has it already.
func applyFix(ctx context.Context, src string, f toolchain.Fix) error {
	patch, err := f.PatchText()
	if err != nil {
		return err
	}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", src, "apply"}, args...)...)
		cmd.Stdin = strings.NewReader(string(patch))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if run("--check", "--reverse") == nil {
		return errors.New("the tree has it already")
	}
	return run()
}

// tooNew is an infrastructure error when the failed build's log shows a
// toolchain-era signature and the toolchain is newer than the kernel's era
// (by the table): every commit would fail the same way, so this is not a
// verdict about the commit.
func (j *buildJob) tooNew() error {
	m, line, ok := toolchain.MatchMismatch(string(logFrom(j.res.Log, j.mark)))
	if !ok {
		return nil
	}
	v, p, ok := toolchain.KernelVersion(j.req.Src)
	if !ok {
		return nil
	}
	want := toolchain.ForKernel(v, p)
	if !toolchain.Newer(j.tc.Spec.Era(), want) {
		return nil
	}
	return outcome.InfraErr("build", fmt.Errorf("%w (%s against Linux %d.%d): %s\n  %s\n  use --toolchain auto, or --toolchain debian:%s (build log: %s)",
		errTooNew, j.tc.ID, v, p, m.Why, strings.TrimSpace(line), want, j.res.Log))
}
