package toolchain

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/lock"
	"github.com/firstbad/firstbad/internal/outcome"
)

// made marks a finished build root, with how it was made.
const made = ".firstbad-root"

// Made says how a build root came to be.
type Made struct {
	Release  string    `json:"release"`
	Packages []string  `json:"packages"`
	Created  time.Time `json:"created"`
	Seconds  float64   `json:"seconds"`
	Bytes    int64     `json:"bytes"`
}

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
	dir := RootDir(rootsDir, spec.Release)
	l, err := lock.Acquire(ctx, dir+".lock", func(h *lock.HeldError) {
		log.Info("waiting for another firstbad making the same build root", "root", dir, "pid", h.PID)
	})
	if err != nil {
		return nil, err
	}
	defer l.Release()
	if _, err := os.Stat(filepath.Join(dir, made)); err != nil {
		if err := makeRoot(ctx, spec.Release, dir, log); err != nil {
			return nil, err
		}
	}
	_ = os.Chtimes(dir, time.Now(), time.Now()) // last used, for gc
	r := &Root{Spec: spec, Dir: dir}
	r.identify()
	return r, nil
}

// RootDir is where a release's build root lives under rootsDir.
func RootDir(rootsDir, release string) string { return filepath.Join(rootsDir, rootKey(release)) }

// Describe is the root's path and its tools' versions.
func (r *Root) Describe() string {
	return r.Dir + ": " + r.versions()
}

// makeRoot runs mmdebstrap into a temporary dir and renames it into
// place: a killed run leaves no half-made root that looks whole.
func makeRoot(ctx context.Context, release, dir string, log *slog.Logger) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return outcome.InfraErr("build root", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return outcome.InfraErr("build root", err)
	}
	log.Warn("making a build root (once; a few minutes)", "release", release, "root", dir)
	start := time.Now()
	args := []string{"--variant=apt", "--components=main", "--include=" + strings.Join(Packages, ","), release, tmp, mirror()}
	out, err := exec.CommandContext(ctx, "mmdebstrap", args...).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return outcome.InfraErr("build root", fmt.Errorf("mmdebstrap %s: %v\n%s", release, err, tail(string(out), 15)))
	}
	m := Made{Release: release, Packages: Packages, Created: time.Now().UTC(), Seconds: time.Since(start).Seconds(), Bytes: size(tmp)}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, made), data, 0o644); err != nil {
		return outcome.InfraErr("build root", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return outcome.InfraErr("build root", err)
	}
	log.Warn("build root ready", "release", release, "seconds", int(m.Seconds), "MiB", m.Bytes>>20)
	return nil
}

// ReadMade is how the root at dir was made (nil if it is not firstbad's).
func ReadMade(dir string) *Made {
	data, err := os.ReadFile(filepath.Join(dir, made))
	if err != nil {
		return nil
	}
	var m Made
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return &m
}

// size is the bytes of the files under dir.
func size(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
