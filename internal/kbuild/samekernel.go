package kbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/firstbad/firstbad/internal/git"
)

// A commit whose tree differs from an already built one only in files
// that build did not read (and in nothing of the build system), with the
// same config, builds the same kernel: make would compile nothing, since
// kbuild decides what to rebuild from the very .cmd files the artifact's
// inputs list comes from. Such a build takes that kernel instead of
// running make (30-60 s of make's walk here, per step).

// built is one kernel built with a build dir's options: its artifact and
// the tree it was built from.
type built struct {
	Key      string `json:"key"`
	Tree     string `json:"tree"`
	Commit   string `json:"commit"`
	Compiler string `json:"compiler"` // the toolchain's identity (part of a key)
}

// keepBuilt is how many recent builds a build dir's options remember.
const keepBuilt = 8

func readBuilt(list string) []built {
	var l []built
	data, err := os.ReadFile(list)
	if err == nil {
		_ = json.Unmarshal(data, &l)
	}
	return l
}

// rememberBuilt puts a build first in the list (a lost update between two
// firstbad processes only costs a make later).
func rememberBuilt(list string, b built) {
	l := []built{b}
	for _, o := range readBuilt(list) {
		if o.Key != b.Key && len(l) < keepBuilt {
			l = append(l, o)
		}
	}
	data, _ := json.Marshal(l)
	if err := os.MkdirAll(filepath.Dir(list), 0o755); err != nil {
		return
	}
	tmp := list + fmt.Sprintf(".%d", os.Getpid())
	if os.WriteFile(tmp, data, 0o644) == nil {
		_ = os.Rename(tmp, list)
	}
}

// ownTree says whether the build is of the commit's own tree, known by
// its hash, with no build fix applied: only such a build can stand for
// the tree (reuse, recent builds, another slot's seed).
func (j *buildJob) ownTree() bool { return j.req.Tree != "" && len(j.fixes) == 0 }

// src is the checkout being built, as a git repository.
func (j *buildJob) src() *git.Repo { return &git.Repo{Dir: j.req.Src} }

// remember puts this job's kernel first in its options' recent builds.
func (j *buildJob) remember() {
	rememberBuilt(j.builtList, built{Key: j.res.Key, Tree: j.req.Tree, Commit: j.req.Commit, Compiler: j.compiler()})
}

// sameKernel takes a recent build's kernel when this tree differs from its
// tree in no file that build read, with the same config and compiler; it
// says so in the log, with the files that changed.
func (j *buildJob) sameKernel(cache *Cache, final []byte) bool {
	if why := j.b.sameOff.Load(); why != nil {
		return false
	}
	b, a, changed, ok := j.sameAs(cache, final)
	if !ok {
		return false
	}
	j.res.Key, j.res.SameAs = b.Key, b.Commit
	j.take(a)
	fmt.Fprintf(j.log, "firstbad: same kernel as %.12s (artifact %s): the %d file(s) changed since touch nothing its build read or the build system: %s\n",
		b.Commit, b.Key, len(changed), strings.Join(first(changed, 5), " "))
	return true
}

// sameAs finds the recent build whose kernel this tree's would be, and the
// files that differ between their trees.
func (j *buildJob) sameAs(cache *Cache, final []byte) (built, Artifact, []string, bool) {
	if !j.ownTree() {
		return built{}, Artifact{}, nil, false
	}
	for _, b := range readBuilt(j.builtList) {
		if b.Compiler != j.compiler() || b.Tree == j.req.Tree {
			continue
		}
		a, ok := cache.Get(b.Key)
		if !ok || (j.o.Modules && a.Modules == "") {
			continue
		}
		if cfg, err := os.ReadFile(a.Config); err != nil || !bytes.Equal(cfg, final) {
			continue
		}
		changed, err := j.src().DiffNames(context.Background(), b.Tree, j.req.Tree)
		if err != nil {
			continue
		}
		// The configs are the same (above), and a Kconfig file does nothing
		// but make the config.
		if read, ok := ReadBy(a.Kernel, slices.DeleteFunc(slices.Clone(changed), KconfigFile)); !ok || len(read) > 0 {
			continue
		}
		return b, a, changed, true
	}
	return built{}, Artifact{}, nil, false
}

// checkPremise verifies same-kernel reuse where it costs nothing: a commit
// whose own kernel is in the artifact cache, and which a recent build
// would also have given its kernel, must have that build's image byte for
// byte (kernel builds are reproducible). If not, reuse is off for the rest
// of this Builder's life, and the log and a warning say why. A machine's
// images differ anyway (the release names the artifact): not checked.
func (j *buildJob) checkPremise(cache *Cache, final []byte) {
	if j.o.Modules || j.b.sameOff.Load() != nil {
		return
	}
	b, a, changed, ok := j.sameAs(cache, final)
	if !ok || a.Kernel == j.res.Kernel {
		return
	}
	mine, err1 := os.ReadFile(j.res.Kernel)
	theirs, err2 := os.ReadFile(a.Kernel)
	if err1 != nil || err2 != nil || bytes.Equal(mine, theirs) {
		return
	}
	why := fmt.Sprintf("%.12s's kernel differs from %.12s's though the %d file(s) changed between them are none its build read (%s): same-kernel reuse is off for this run",
		j.req.Commit, b.Commit, len(changed), strings.Join(first(changed, 5), " "))
	j.b.sameOff.Store(&why)
	fmt.Fprintf(j.log, "firstbad: %s\n", why)
	j.b.Log.Warn(why)
}

// first is at most n of s, with "..." when there are more.
func first(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string(nil), s[:n]...), "...")
}
