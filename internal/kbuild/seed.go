package kbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/lock"
)

// seed starts a build dir that never built from a sibling in the same
// checkout that built the same final .config — other options that
// assemble to the same config, as a machine:// build of a QEMU kernel's
// config, or fragments that only restate it: a copy of its objects makes
// the first build here incremental instead of a whole-tree one (with
// ccache that is still ~1,300 hits, minutes on a small machine). Only
// within one checkout: its sources are the ones both dirs' timestamps
// were made against, and kbuild reaches them by the same relative path.
func (j *buildJob) seed(ctx context.Context, final []byte) {
	if fileExists(filepath.Join(j.dir, "vmlinux")) || !strings.HasPrefix(filepath.Base(j.dir), cachedir.BuildDirPrefix) {
		return
	}
	for _, sib := range siblings(j.dir) {
		if fileExists(filepath.Join(sib, building)) {
			continue
		}
		if cfg, err := os.ReadFile(filepath.Join(sib, ".config")); err != nil || !bytes.Equal(cfg, final) {
			continue
		}
		l, err := lock.TryAcquire(sib + ".lock")
		if err != nil {
			continue // building: it will not hold still for a copy
		}
		start := time.Now()
		out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", sib+"/.", j.dir+"/").CombinedOutput()
		l.Release()
		if err != nil {
			fmt.Fprintf(j.log, "firstbad: copying the build dir %s failed (%v: %s): building from scratch\n", filepath.Base(sib), err, bytes.TrimSpace(out))
			j.unseed()
			return
		}
		if err := rehome(filepath.Join(j.dir, "tools"), sib, j.dir); err != nil {
			fmt.Fprintf(j.log, "firstbad: rewriting the copied build dir's paths failed (%v): building from scratch\n", err)
			j.unseed()
			return
		}
		os.Remove(filepath.Join(j.dir, "ccache-stats.log"))
		fmt.Fprintf(j.log, "firstbad: this build dir starts as a copy of %s, which built the same .config (%.1f s): the build is incremental\n",
			filepath.Base(sib), time.Since(start).Seconds())
		j.b.Log.Info("a new build dir starts from a sibling with the same config", "from", filepath.Base(sib), "seconds", time.Since(start).Round(time.Millisecond))
		return
	}
}

// siblings are the other build dirs of the checkout, the one that built
// last first: its objects are the newest against the sources' timestamps,
// so make redoes the least there (one built before a checkout that
// touched widely included headers would rebuild nearly everything).
func siblings(dir string) []string {
	all, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), cachedir.BuildDirPrefix+"*"))
	built := map[string]time.Time{}
	var sibs []string
	for _, s := range all {
		if fi, err := os.Stat(filepath.Join(s, "vmlinux")); err == nil && s != dir {
			built[s] = fi.ModTime()
			sibs = append(sibs, s)
		}
	}
	sort.Slice(sibs, func(a, b int) bool { return built[sibs[a]].After(built[sibs[b]]) })
	return sibs
}

// rehome rewrites the absolute paths of the copied dir in the host tools'
// dependency files (objtool and its libraries are built with an absolute
// OUTPUT): left alone, their command lines differ, objtool is relinked,
// and every object objtool checked is rebuilt.
func rehome(tools, from, to string) error {
	old, repl := []byte(from+"/"), []byte(to+"/")
	if _, err := os.Stat(tools); os.IsNotExist(err) {
		return nil // a kernel without host tools (older trees, no objtool)
	}
	return filepath.WalkDir(tools, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".cmd") || strings.HasSuffix(p, ".d")) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, old) {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, bytes.ReplaceAll(data, old, repl), 0o644); err != nil {
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
