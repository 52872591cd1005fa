package toolchain

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/firstbad/firstbad/internal/debroot"
	"github.com/firstbad/firstbad/internal/outcome"
)

// Ensure returns the toolchain spec names: the host's, the user's root, or
// a Debian release's root under rootsDir, made once (by one process at a
// time) with mmdebstrap. Auto is resolved per commit by the caller.
func Ensure(ctx context.Context, spec Spec, rootsDir string, log *slog.Logger) (*Root, error) {
	switch spec.Kind {
	case "host", "":
		if s, ok := hostStandIn(); ok {
			return ensureDebian(ctx, s, rootsDir, log)
		}
		return Host(), nil
	case "dir":
		r := &Root{Spec: spec, Dir: spec.Dir}
		if err := Installed(); err != nil {
			return nil, outcome.InputErr("--toolchain %s: %v", spec.Dir, err)
		}
		r.identify()
		return r, nil
	case "debian":
		return ensureDebian(ctx, spec, rootsDir, log)
	}
	return nil, fmt.Errorf("toolchain %s must be resolved for a commit first", spec)
}

func ensureDebian(ctx context.Context, spec Spec, rootsDir string, log *slog.Logger) (*Root, error) {
	if err := Installed(); err != nil {
		return nil, outcome.InputErr("--toolchain %s: %v", spec, err)
	}
	dir, err := debroot.Ensure(ctx, rootsDir, want(spec.Release), log)
	if err != nil {
		return nil, err
	}
	r := &Root{Spec: spec, Dir: dir}
	r.identify()
	return r, nil
}

// want is the build root of a release: apt's variant plus Packages.
func want(release string) debroot.Want {
	return debroot.Want{Release: release, Variant: "apt", Packages: Packages, What: "build root"}
}

// RootDir is where a release's build root lives under rootsDir.
func RootDir(rootsDir, release string) string { return debroot.Dir(rootsDir, want(release)) }

// Describe is the root's path and its tools' versions.
func (r *Root) Describe() string {
	return r.Dir + ": " + r.versions()
}
