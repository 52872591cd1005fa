package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/firstbad/firstbad/internal/gittest"
)

// firstbad's checkout must hold what the user's checkout (and so git
// bisect run) holds: smudged content, today's tags, filled submodules.

func TestCheckoutAppliesRepositoryFilters(t *testing.T) {
	var b gittest.Builder
	prev := -1
	for i := range 10 {
		files := map[string]string{"x.dat": fmt.Sprint(i), ".gitattributes": "*.dat filter=mark\n"}
		if prev < 0 {
			prev = b.CommitFiles(fmt.Sprintf("c%d", i), files)
		} else {
			prev = b.CommitFiles(fmt.Sprintf("c%d", i), files, prev)
		}
	}
	repo := b.Write(t)
	gittest.Git(t, repo.Dir, "config", "filter.mark.smudge", "sed s/^/smudged:/")
	gittest.Git(t, repo.Dir, "config", "filter.mark.clean", "sed s/^smudged://")
	e := newEnv(t)
	// Without the filter every step would skip (exit 125).
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[prev],
		"--exec", `grep -q '^smudged:' x.dat || exit 125; [ $(cut -d: -f2 x.dat) -lt 6 ]`)
	if res.code != 0 || r.Culprit == nil || *r.Culprit != repo.SHAs[6] {
		t.Fatalf("exit %d outcome %s: %s\n%s", res.code, r.Outcome, r.Message, res.stderr)
	}
}

func TestCheckoutSeesTagsMadeLater(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 12)
	repo := b.Write(t)
	e := newEnv(t)
	// The first run makes firstbad's clone.
	if res := e.run("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", "[ $(cat f) -lt 4 ]"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	gittest.Git(t, repo.Dir, "tag", "-a", "-m", "release", "release-1", repo.SHAs[2])
	r, res := e.runJSON("run", "--repo", repo.Dir, "--good", "c0", "--bad", repo.SHAs[tip],
		"--exec", `git describe --match 'release-*' >/dev/null 2>&1 || exit 125; [ $(cat f) -lt 7 ]`)
	if res.code != 0 || r.Culprit == nil || *r.Culprit != repo.SHAs[7] {
		t.Fatalf("exit %d outcome %s: %s\n%s", res.code, r.Outcome, r.Message, res.stderr)
	}
}

func TestCheckoutFillsSubmodules(t *testing.T) {
	base := t.TempDir()
	sub := filepath.Join(base, "sub")
	gitIn := func(dir string, args ...string) string { return gittest.Git(t, dir, args...) }
	os.MkdirAll(sub, 0o755)
	gitIn(sub, "init", "-q", "-b", "main")
	main := filepath.Join(base, "main")
	os.MkdirAll(main, 0o755)
	gitIn(main, "init", "-q", "-b", "main")
	var shas []string
	for i := range 10 {
		os.WriteFile(filepath.Join(sub, "f"), []byte(fmt.Sprint(i)), 0o644)
		gitIn(sub, "add", "f")
		gitIn(sub, "commit", "-q", "-m", fmt.Sprintf("s%d", i))
		if i == 0 {
			gitIn(main, "-c", "protocol.file.allow=always", "submodule", "add", "-q", sub, "sub")
		} else {
			gitIn(filepath.Join(main, "sub"), "-c", "protocol.file.allow=always", "pull", "-q", "origin", "main")
			gitIn(main, "add", "sub")
		}
		gitIn(main, "commit", "-q", "-m", fmt.Sprintf("m%d", i))
		shas = append(shas, gitIn(main, "rev-parse", "HEAD"))
	}
	e := newEnv(t)
	r, res := e.runJSON("run", "--repo", main, "--good", shas[0], "--bad", shas[9], "--exec", `[ "$(cat sub/f)" -lt 4 ]`)
	if res.code != 0 || r.Culprit == nil || *r.Culprit != shas[4] {
		t.Fatalf("exit %d outcome %s: %s\n%s", res.code, r.Outcome, r.Message, res.stderr)
	}
}

// A repository path with a newline: git's alternates file cannot hold it;
// the clone borrows through a link instead (every resume used to fail).
func TestRepositoryPathWithNewline(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 10)
	dir := filepath.Join(t.TempDir(), "repo\nwith newline")
	os.MkdirAll(dir, 0o755)
	repo := b.WriteTo(t, dir)
	e := newEnv(t)
	r, res := e.runJSON("run", "--repo", dir, "--good", "c0", "--bad", repo.SHAs[tip], "--exec", "[ $(cat f) -lt 3 ]")
	if res.code != 0 || r.Culprit == nil || *r.Culprit != repo.SHAs[3] {
		t.Fatalf("exit %d outcome %s\n%s", res.code, r.Outcome, res.stderr)
	}
}
