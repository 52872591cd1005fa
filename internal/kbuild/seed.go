package kbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/lock"
)

// seed starts a build dir that never built from a sibling that built the
// same final .config — other options that assemble to the same config, as
// a machine:// build of a QEMU kernel's config, fragments that only
// restate it, or the same options in another checkout slot (a second run
// at once): a copy of its objects makes the first build here incremental
// instead of a whole-tree one (with ccache that is still ~1,300 hits,
// minutes on a small machine). A sibling of this checkout first: its
// objects' timestamps were made against these very sources. One of
// another slot is taken only with the tree it last built whole, and
// retimed against this checkout (retime). Failing those, a sibling of this
// checkout that built a config near this one with the same compiler
// (near): kbuild rebuilds what the options that differ feed.
func (j *buildJob) seed(ctx context.Context, final []byte) {
	if fileExists(filepath.Join(j.dir, seeding)) {
		// A copy cut short (the controller killed): what it left has
		// timestamps nothing vouches for, half-written files among them.
		fmt.Fprintf(j.log, "firstbad: the last copy into this build dir was cut short: emptied it\n")
		j.unseed()
	}
	if fileExists(filepath.Join(j.dir, "vmlinux")) || !strings.HasPrefix(filepath.Base(j.dir), cachedir.BuildDirPrefix) {
		return
	}
	same := func(cfg []byte) bool { return bytes.Equal(cfg, final) }
	for _, sib := range siblings(j.dir) {
		if j.seedFrom(ctx, sib, same, "which built the same .config", false) {
			return
		}
	}
	if j.req.Tree != "" {
		for _, sib := range otherSlots(j.dir) {
			if j.seedFrom(ctx, sib, same, "which built the same .config", true) {
				return
			}
		}
	}
	if sib, cfg, delta := near(siblings(j.dir), final); sib != "" {
		unchanged := func(now []byte) bool { return bytes.Equal(now, cfg) }
		j.seedFrom(ctx, sib, unchanged, fmt.Sprintf("which built a config %d option(s) apart (%s): kbuild rebuilds what they feed", len(delta), listSome(delta, 5)), false)
	}
}

// near is the sibling whose last config is nearest final (fewest options
// apart, at most half as many as final has lines), built by the same
// compiler for the same arch, with that config and the options apart; ""
// if none is.
func near(sibs []string, final []byte) (sib string, cfg []byte, delta []string) {
	limit := bytes.Count(final, []byte("\n")) / 2
	for _, s := range sibs {
		c, err := os.ReadFile(filepath.Join(s, ".config"))
		if err != nil {
			continue
		}
		if d, ok := configDelta(c, final); ok && len(d) <= limit && (sib == "" || len(d) < len(delta)) {
			sib, cfg, delta = s, c, d
		}
	}
	return sib, cfg, delta
}

// configDelta lists the options whose values differ between two configs
// (unset and absent are the same), sorted; ok is false when they are for
// different arches or compilers, or do not say which (before 5.8): kbuild
// would rebuild everything, and a copy would gain nothing.
func configDelta(a, b []byte) ([]string, bool) {
	va, _ := Values(bytes.NewReader(a))
	vb, _ := Values(bytes.NewReader(b))
	for _, tool := range []string{"CONFIG_CC_VERSION_TEXT", "CONFIG_AS_VERSION", "CONFIG_LD_VERSION"} {
		if va[tool] == "" || va[tool] != vb[tool] {
			return nil, false
		}
	}
	if archLine(a) == "" || archLine(a) != archLine(b) {
		return nil, false
	}
	var delta []string
	for name, v := range va {
		if w, ok := vb[name]; v != w && (ok || v != "n") {
			delta = append(delta, name)
		}
	}
	for name, w := range vb {
		if _, ok := va[name]; !ok && w != "n" {
			delta = append(delta, name)
		}
	}
	sort.Strings(delta)
	return delta, true
}

// archLine is a .config's "# Linux/x86 6.1.0 Kernel Configuration" line's
// arch ("" if it has none).
func archLine(cfg []byte) string {
	for _, l := range strings.SplitN(string(cfg), "\n", 5) {
		if rest, ok := strings.CutPrefix(l, "# Linux/"); ok {
			arch, _, _ := strings.Cut(rest, " ")
			return arch
		}
	}
	return ""
}

// listSome joins the first n names, and says how many more there are.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// seedFrom copies sib into the build dir if its config is one accept takes
// and it holds still (not building, its lock free); it says whether it
// did. from says what the sibling is to the log.
func (j *buildJob) seedFrom(ctx context.Context, sib string, accept func(cfg []byte) bool, from string, otherSlot bool) bool {
	if fileExists(filepath.Join(sib, building)) {
		return false
	}
	if cfg, err := os.ReadFile(filepath.Join(sib, ".config")); err != nil || !accept(cfg) {
		return false
	}
	l, err := lock.TryAcquire(sib + ".lock")
	if err != nil {
		return false // building: it will not hold still for a copy
	}
	defer l.Release()
	// Read under the lock: the tree of the objects about to be copied.
	data, _ := os.ReadFile(filepath.Join(sib, builtTree))
	tree := strings.TrimSpace(string(data))
	if otherSlot && tree == "" {
		return false
	}
	// A first build killed here left files of unknown completeness: gone
	// before the copy, which a retime would otherwise make look newer.
	if killed := filepath.Join(j.dir, building); fileExists(killed) {
		if _, err := removeInterrupted(j.dir, killed); err != nil {
			return false
		}
		os.Remove(killed)
	}
	marker := filepath.Join(j.dir, seeding)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return false
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", sib+"/.", j.dir+"/").CombinedOutput()
	if err != nil {
		fmt.Fprintf(j.log, "firstbad: copying the build dir %s failed (%v: %s): building from scratch\n", filepath.Base(sib), err, bytes.TrimSpace(out))
		j.unseed()
		return true
	}
	// A replacer tries its pairs in order: the build dir's path first.
	pairs := []string{sib + "/", j.dir + "/"}
	if otherSlot {
		pairs = append(pairs, filepath.Dir(sib)+"/", filepath.Dir(j.dir)+"/")
	}
	if err := rehome(filepath.Join(j.dir, "tools"), pairs...); err != nil {
		fmt.Fprintf(j.log, "firstbad: rewriting the copied build dir's paths failed (%v): building from scratch\n", err)
		j.unseed()
		return true
	}
	from = filepath.Base(sib) + ", " + from
	if otherSlot {
		n, err := j.retime(ctx, tree)
		if err != nil {
			fmt.Fprintf(j.log, "firstbad: retiming the build dir copied from %s failed (%v): building from scratch\n", filepath.Base(sib), err)
			j.unseed()
			return true
		}
		from += fmt.Sprintf(" in checkout slot %s at tree %.12s (%d files differ here: make rebuilds what they feed)", filepath.Base(filepath.Dir(sib)), tree, n)
	}
	os.Remove(filepath.Join(j.dir, "ccache-stats.log"))
	if err := os.Remove(marker); err != nil {
		j.unseed()
		return true
	}
	fmt.Fprintf(j.log, "firstbad: this build dir starts as a copy of %s, %.1f s: the build is incremental\n", from, time.Since(start).Seconds())
	j.b.Log.Info("a new build dir starts from a sibling", "from", filepath.Base(sib), "other_slot", otherSlot, "seconds", time.Since(start).Round(time.Millisecond))
	return true
}

// retime makes a copy from another checkout slot right against this one.
// Its objects' timestamps were made against that slot's sources, whose
// timestamps say nothing here: every copied file is set to now (after
// every file of this checkout), then every source file that differs
// between the tree the copy was built from and this checkout's is set to
// a moment later — so make rebuilds exactly what those files feed, as if
// this checkout had built the copy. (A file of this checkout that is the
// same is not newer than the copy: it was checked out before.) It returns
// how many files differ.
func (j *buildJob) retime(ctx context.Context, builtFrom string) (int, error) {
	changed, err := j.src().DiffNames(ctx, builtFrom, j.req.Tree)
	if err != nil {
		return 0, err
	}
	// Now, not earlier: the checkout may have written files a moment ago.
	copied := time.Now()
	err = filepath.WalkDir(j.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		return os.Chtimes(p, copied, copied)
	})
	if err != nil {
		return 0, err
	}
	time.Sleep(10 * time.Millisecond) // strictly after the copy, never in the future
	now := time.Now()
	for _, f := range changed {
		if err := os.Chtimes(filepath.Join(j.req.Src, f), now, now); err != nil && !os.IsNotExist(err) {
			return 0, err
		}
	}
	// The index's stat data of those files is stale now: refreshed, or the
	// next checkout would rewrite them and make rebuild all they feed again.
	// (It exits 1 when a file differs from the index, which is no error here.)
	if _, err := j.src().Run(ctx, "update-index", "-q", "--refresh"); err != nil {
		var ge *git.Error
		if !errors.As(err, &ge) || ge.Stderr != "" {
			return 0, err
		}
	}
	return len(changed), nil
}

// seeding marks a build dir while a sibling is copied into it and
// retimed; a dir that still has it was cut short and is emptied.
const seeding = ".firstbad-seeding"

// builtTree names the file that holds the tree a build dir last built
// whole (no build fixes applied, make ended well); it is removed when a
// build starts. Only a dir with one is copied into another slot.
const builtTree = ".firstbad-tree"

// otherSlots are the build dirs of the clone's other checkout slots that
// say what tree they last built, the newest first.
func otherSlots(dir string) []string {
	slot := filepath.Dir(dir)
	return newestFirst(filepath.Join(filepath.Dir(slot), "*", cachedir.BuildDirPrefix+"*"), builtTree,
		func(s string) bool { return filepath.Dir(s) != slot })
}

// siblings are the other build dirs of the checkout, the one that built
// last first: its objects are the newest against the sources' timestamps,
// so make redoes the least there (one built before a checkout that
// touched widely included headers would rebuild nearly everything).
func siblings(dir string) []string {
	return newestFirst(filepath.Join(filepath.Dir(dir), cachedir.BuildDirPrefix+"*"), "vmlinux",
		func(s string) bool { return s != dir })
}

// newestFirst lists the dirs matching pattern that hold file and that
// keep accepts, by that file's time, the newest first.
func newestFirst(pattern, file string, keep func(string) bool) []string {
	all, _ := filepath.Glob(pattern)
	at := map[string]time.Time{}
	var dirs []string
	for _, d := range all {
		if fi, err := os.Stat(filepath.Join(d, file)); err == nil && keep(d) {
			at[d] = fi.ModTime()
			dirs = append(dirs, d)
		}
	}
	sort.Slice(dirs, func(a, b int) bool { return at[dirs[a]].After(at[dirs[b]]) })
	return dirs
}

// rehome rewrites the absolute paths of the copied dir in the host tools'
// dependency files (objtool and its libraries are built with an absolute
// OUTPUT, and from another slot they name its sources absolutely too):
// left alone, their command lines differ, objtool is relinked, and every
// object objtool checked is rebuilt. Pairs are old and new path prefixes,
// the longest first.
func rehome(tools string, pairs ...string) error {
	if _, err := os.Stat(tools); os.IsNotExist(err) {
		return nil // a kernel without host tools (older trees, no objtool)
	}
	r := strings.NewReplacer(pairs...)
	return filepath.WalkDir(tools, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".cmd") || strings.HasSuffix(p, ".d")) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out := r.Replace(string(data))
		if out == string(data) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
			return err
		}
		return os.Chtimes(p, fi.ModTime(), fi.ModTime())
	})
}

// unseed empties a build dir whose seeding failed half-way.
func (j *buildJob) unseed() {
	entries, _ := os.ReadDir(j.dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(j.dir, e.Name()))
	}
}
