// Package toolchain is where a kernel build runs: the host's own compiler,
// or a build root holding another Debian release's toolchain (made once
// with mmdebstrap from Debian's packages, entered with bubblewrap so that
// nothing of the host but the source, the build dir and ccache is seen).
// An old kernel builds with the compiler of its era; the root's identity
// (release, gcc, binutils) is part of every artifact's key and evidence.
package toolchain

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/firstbad/firstbad/internal/outcome"
)

// Spec is what the user asked for with --toolchain.
type Spec struct {
	Kind    string // host, debian, dir or auto
	Release string // debian: the release (bullseye, bookworm, trixie)
	Dir     string // dir: a root the user made
}

// Releases are the Debian releases firstbad makes build roots of, oldest
// first, with the gcc each brings.
var Releases = []struct{ Name, GCC string }{
	{"bullseye", "10"}, {"bookworm", "12"}, {"trixie", "14"},
}

// Parse reads --toolchain: "" or host, auto, debian:RELEASE, or a
// directory.
func Parse(s string) (Spec, error) {
	switch {
	case s == "" || s == "host":
		return Spec{Kind: "host"}, nil
	case s == "auto":
		return Spec{Kind: "auto"}, nil
	case strings.HasPrefix(s, "debian:"):
		rel := strings.TrimPrefix(s, "debian:")
		for _, r := range Releases {
			if r.Name == rel {
				return Spec{Kind: "debian", Release: rel}, nil
			}
		}
		return Spec{}, outcome.InputErr("--toolchain %q: firstbad makes build roots of %s", s, releaseNames())
	case strings.HasPrefix(s, "/") || strings.HasPrefix(s, "."):
		abs, err := filepath.Abs(s)
		if err != nil {
			return Spec{}, outcome.InputErr("--toolchain %s: %v", s, err)
		}
		if _, err := os.Stat(filepath.Join(abs, "usr", "bin", "gcc")); err != nil {
			return Spec{}, outcome.InputErr("--toolchain %s: not a build root (no usr/bin/gcc in it)", s)
		}
		return Spec{Kind: "dir", Dir: abs}, nil
	}
	return Spec{}, outcome.InputErr("--toolchain %q: want host, auto, debian:RELEASE (%s) or a root directory", s, releaseNames())
}

func releaseNames() string {
	var n []string
	for _, r := range Releases {
		n = append(n, r.Name)
	}
	return strings.Join(n, ", ")
}

// Era is the Debian release whose toolchain this is: the release asked
// for, or the host's for the host's toolchain ("" when unknown).
func (s Spec) Era() string {
	if s.Kind == "host" {
		return HostRelease()
	}
	return s.Release
}

func (s Spec) String() string {
	switch s.Kind {
	case "debian":
		return "debian:" + s.Release
	case "dir":
		return s.Dir
	}
	return s.Kind
}

// Root is a toolchain ready to run builds.
type Root struct {
	Spec Spec
	Dir  string // the root file system; "" for the host
	// ID names the toolchain: release (or root), gcc and binutils
	// versions. Part of the artifact key and of each step's evidence.
	ID string
}

// Host is the host's own toolchain.
func Host() *Root {
	r := &Root{Spec: Spec{Kind: "host"}}
	r.ID = "host: " + r.versions()
	return r
}

// known holds the versions of each toolchain (by root dir; "" is the
// host's) already asked in this process: a root is read-only once made,
// and every build of a run asks again.
var known sync.Map

// versions is "gcc X, binutils Y" as the root's tools say.
func (r *Root) versions() string {
	if v, ok := known.Load(r.Dir); ok {
		return v.(string)
	}
	v := r.askVersions()
	known.Store(r.Dir, v)
	return v
}

// Command is name with args, run in the root (read-only) with binds
// (directories bound read-write at the same paths; the rest of the host
// is not visible) and
// the caller's environment. It starts in the command's Dir when that is
// bound (bwrap keeps the working directory), else in /.
func (r *Root) Command(name string, args []string, binds ...string) *exec.Cmd {
	if r == nil || r.Dir == "" {
		return exec.Command(name, args...)
	}
	bw := []string{"--bind", r.Dir, "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--die-with-parent"}
	for _, b := range binds {
		if b != "" {
			bw = append(bw, "--bind", b, b)
		}
	}
	// The root itself read-only once the binds are in place: a build must
	// not change the toolchain every later build uses.
	bw = append(bw, "--remount-ro", "/")
	return exec.Command("bwrap", append(append(bw, "--", name), args...)...)
}

func (r *Root) askVersions() string {
	first := func(name string, args ...string) string {
		out, err := r.Command(name, args).Output()
		if err != nil {
			return name + " missing"
		}
		line, _, _ := strings.Cut(string(out), "\n")
		return strings.TrimSpace(line)
	}
	return first("gcc", "--version") + "; " + first("ld", "--version")
}

// identify sets the root's ID from its tools.
func (r *Root) identify() {
	r.ID = r.Spec.String() + ": " + r.versions()
}

// Packages go into every build root: a compiler and binutils, make, and
// what a kernel build runs (bc, bison, flex, perl, python3, cpio, kmod),
// the headers it builds against (libelf, libssl), and ccache.
var Packages = []string{"gcc", "libc6-dev", "make", "bc", "bison", "flex", "perl", "python3", "cpio", "kmod",
	"xz-utils", "libelf-dev", "libssl-dev", "ccache", "git"}

// Installed is a short note on what is missing to make build roots.
func Installed() error {
	for _, tool := range []string{"mmdebstrap", "bwrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: build roots need mmdebstrap and bubblewrap (apt-get install mmdebstrap bubblewrap, or ./setup.sh)", tool)
		}
	}
	return nil
}
