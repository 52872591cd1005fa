package toolchain

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// eras maps kernel lines to the newest Debian release whose toolchain
// builds them, oldest first: a kernel up to and including Until builds with
// Release's gcc. Sources: syzkaller's per-tag compiler choice for bisection
// (pkg/vcs/linux.go: gcc 10.1 for v5.9..v5.15, a current gcc from v5.16),
// and Debian's own pairing of each release's kernel with its gcc (bullseye:
// 5.10 with gcc 10, bookworm: 6.1 with gcc 12, trixie: 6.12 with gcc 14).
// Checked here (bench/toolchain-bench.sh): 5.10.28 builds in bullseye's
// root as it is, and with gcc 12 or 14 only with the libsubcmd fix;
// 6.1.176 (the test kernel) builds with bookworm's gcc 12.
var eras = []struct {
	until   [2]int
	release string
}{
	{[2]int{5, 15}, "bullseye"},
	{[2]int{6, 5}, "bookworm"},
	{[2]int{1 << 30, 0}, "trixie"},
}

// ForKernel is the release for a kernel VERSION.PATCHLEVEL. Kernels older
// than the oldest era's also get its release (the oldest there is), with
// the build fixes to bridge the rest.
func ForKernel(version, patchlevel int) string {
	for _, e := range eras {
		if version < e.until[0] || version == e.until[0] && patchlevel <= e.until[1] {
			return e.release
		}
	}
	return eras[len(eras)-1].release
}

// Older is the release before r, or "" for the oldest.
func Older(r string) string {
	for i, x := range Releases {
		if x.Name == r && i > 0 {
			return Releases[i-1].Name
		}
	}
	return ""
}

var versionRe = regexp.MustCompile(`^(VERSION|PATCHLEVEL)\s*=\s*(\d+)`)

// KernelVersion reads VERSION and PATCHLEVEL from a tree's Makefile.
func KernelVersion(src string) (version, patchlevel int, ok bool) {
	f, err := os.Open(filepath.Join(src, "Makefile"))
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	got := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() && got < 2 {
		if m := versionRe.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.Atoi(m[2])
			if m[1] == "VERSION" {
				version = n
			} else {
				patchlevel = n
			}
			got++
		}
	}
	return version, patchlevel, got == 2
}

// StandIn names a Debian release whose root stands in for the host's
// toolchain (FIRSTBAD_HOST_TOOLCHAIN=debian:trixie): how tests and
// benchmarks play a host newer than this one.
const StandIn = "FIRSTBAD_HOST_TOOLCHAIN"

func hostStandIn() (Spec, bool) {
	v := os.Getenv(StandIn)
	if v == "" {
		return Spec{}, false
	}
	s, err := Parse(v)
	return s, err == nil && s.Kind == "debian"
}

// HostRelease is the host's Debian release (VERSION_CODENAME), or "".
func HostRelease() string {
	if s, ok := hostStandIn(); ok {
		return s.Release
	}
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// Auto is auto's choice for the tree at src: the era's release, as the
// host's own toolchain when the host is that release.
func Auto(src string) Spec {
	v, p, ok := KernelVersion(src)
	if !ok {
		return Spec{Kind: "host"}
	}
	rel := ForKernel(v, p)
	if rel == HostRelease() {
		return Spec{Kind: "host"}
	}
	return Spec{Kind: "debian", Release: rel}
}

// Newer reports whether release a is later than b (unknown releases are
// never newer).
func Newer(a, b string) bool {
	ia, ib := -1, -1
	for i, r := range Releases {
		if r.Name == a {
			ia = i
		}
		if r.Name == b {
			ib = i
		}
	}
	return ia >= 0 && ib >= 0 && ia > ib
}

// EraTable is the era table, for messages: "up to 5.15: bullseye, ...".
func EraTable() string {
	var parts []string
	for i, e := range eras {
		if i == len(eras)-1 {
			parts = append(parts, "later: "+e.release)
			break
		}
		parts = append(parts, fmt.Sprintf("up to %d.%d: %s", e.until[0], e.until[1], e.release))
	}
	return strings.Join(parts, ", ")
}
