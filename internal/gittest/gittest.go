// Package gittest builds real git repositories for tests, fast, with
// git fast-import: linear histories, merges of any shape, fixed dates.
package gittest

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Builder describes a history; commits are numbered from 0 in creation order.
type Builder struct {
	commits []spec
	// Files, if set, makes Commit write one of these paths (chosen at
	// random from FileSeed) instead of "f", and merges get the tree a
	// merge would have: every file at its newest version among the
	// parents. Path-limited bisects then have something to limit.
	Files    []string
	FileSeed uint64
	rng      *rand.Rand
}

type spec struct {
	parents []int
	subject string
	files   map[string]string
	time    int64
}

// Commit adds a commit with the given parents (none for a root) that writes
// file "f" with its own number, and returns its number.
func (b *Builder) Commit(parents ...int) int {
	n := len(b.commits)
	path := "f"
	if len(b.Files) > 0 {
		if b.rng == nil {
			b.rng = rand.New(rand.NewPCG(b.FileSeed, 0x5eed))
		}
		path = b.Files[b.rng.IntN(len(b.Files))]
		if len(parents) > 1 {
			// Most merges only join trees; some resolve something.
			if b.rng.IntN(3) > 0 {
				return b.CommitFiles(fmt.Sprintf("merge %d", n), nil, parents...)
			}
		}
	}
	return b.CommitFiles(fmt.Sprintf("commit %d", n), map[string]string{path: fmt.Sprint(n)}, parents...)
}

// CommitFiles adds a commit with a subject and file contents.
func (b *Builder) CommitFiles(subject string, files map[string]string, parents ...int) int {
	n := len(b.commits)
	for _, p := range parents {
		if p < 0 || p >= n {
			panic(fmt.Sprintf("gittest: parent %d of commit %d does not exist", p, n))
		}
	}
	// Strictly increasing dates: children newer than parents, no ties.
	b.commits = append(b.commits, spec{parents: parents, subject: subject, files: files, time: 1700000000 + int64(n)*60})
	return n
}

// Len is the number of commits so far.
func (b *Builder) Len() int { return len(b.commits) }

// Linear adds n commits on top of parent (-1 for a new root) and returns the last.
func (b *Builder) Linear(parent, n int) int {
	for i := 0; i < n; i++ {
		if parent < 0 {
			parent = b.Commit()
		} else {
			parent = b.Commit(parent)
		}
	}
	return parent
}

// Repo is a built repository.
type Repo struct {
	Dir  string
	SHAs []string // by commit number
}

// Write creates the repository in a new temp dir, with branch main at the
// last commit checked out and a tag cN for every commit N.
func (b *Builder) Write(t testing.TB) *Repo {
	t.Helper()
	return b.WriteTo(t, t.TempDir())
}

// WriteTo is Write into dir.
func (b *Builder) WriteTo(t testing.TB, dir string) *Repo {
	t.Helper()
	Git(t, dir, "init", "-q", "-b", "main")
	var in bytes.Buffer
	w := bufio.NewWriter(&in)
	trees := b.trees()
	for i, c := range b.commits {
		if len(c.parents) == 0 && i > 0 {
			fmt.Fprintf(w, "reset refs/heads/main\n\n") // a new root
		}
		fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\n", i+1)
		fmt.Fprintf(w, "author Test Author <author@example.com> %d +0000\n", c.time)
		fmt.Fprintf(w, "committer Test Committer <committer@example.com> %d +0000\n", c.time)
		fmt.Fprintf(w, "data %d\n%s\n", len(c.subject)+1, c.subject)
		if len(c.parents) > 0 {
			fmt.Fprintf(w, "from :%d\n", c.parents[0]+1)
			for _, p := range c.parents[1:] {
				fmt.Fprintf(w, "merge :%d\n", p+1)
			}
		}
		files := c.files
		if trees != nil && len(c.parents) > 1 {
			files = map[string]string{}
			first := trees[c.parents[0]]
			for path, v := range trees[i] {
				if fv, ok := first[path]; !ok || fv != v {
					files[path] = v.content
				}
			}
		}
		for _, path := range slices.Sorted(maps.Keys(files)) {
			fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", path, len(files[path]), files[path])
		}
		fmt.Fprintf(w, "\n")
	}
	w.Flush()
	stream := in.String()
	marks := filepath.Join(t.TempDir(), "marks")
	cmd := exec.Command("git", "fast-import", "--quiet", "--export-marks="+marks)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stream)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fast-import: %v\n%s", err, out)
	}
	data, err := os.ReadFile(marks)
	if err != nil {
		t.Fatal(err)
	}
	r := &Repo{Dir: dir, SHAs: make([]string, len(b.commits))}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var n int
		var sha string
		if _, err := fmt.Sscanf(line, ":%d %s", &n, &sha); err != nil {
			t.Fatalf("marks line %q: %v", line, err)
		}
		r.SHAs[n-1] = sha
	}
	last := r.SHAs[len(r.SHAs)-1]
	Git(t, dir, "update-ref", "refs/heads/main", last)
	var tags strings.Builder
	for i, s := range r.SHAs {
		fmt.Fprintf(&tags, "create refs/tags/c%d %s\n", i, s)
	}
	cmd = exec.Command("git", "update-ref", "--stdin")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(tags.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tags: %v\n%s", err, out)
	}
	Git(t, dir, "checkout", "-q", "-f", "main")
	return r
}

// version is a file's content and the commit that last wrote it.
type version struct {
	content string
	by      int
}

// trees is every commit's full tree when Files is set (nil otherwise): a
// merge takes each file at the newest version among its parents, then
// applies its own writes.
func (b *Builder) trees() []map[string]version {
	if len(b.Files) == 0 {
		return nil
	}
	trees := make([]map[string]version, len(b.commits))
	for i, c := range b.commits {
		t := map[string]version{}
		for _, p := range c.parents {
			for path, v := range trees[p] {
				if old, ok := t[path]; !ok || v.by > old.by {
					t[path] = v
				}
			}
		}
		for path, content := range c.files {
			t[path] = version{content: content, by: i}
		}
		trees[i] = t
	}
	return trees
}

// Git runs git in dir and fails the test on error.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// MergeHeavy adds about n commits shaped like a busy tree: up to four lines
// of work branching off and merging back, criss-cross merges (two lines
// merging each other) and octopus merges, all joined into a final tip,
// which it returns. It is deterministic for a given seed.
func (b *Builder) MergeHeavy(root, n int, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	heads := []int{root}
	for b.Len() < n {
		switch r := rng.IntN(10); {
		case r < 5 || len(heads) == 1 && r < 8: // work on a line
			i := rng.IntN(len(heads))
			heads[i] = b.Commit(heads[i])
		case r < 7 && len(heads) < 4: // branch off
			heads = append(heads, b.Commit(heads[rng.IntN(len(heads))]))
		case r < 8 && len(heads) >= 2: // criss-cross: each merges the other
			i, j := rng.IntN(len(heads)), rng.IntN(len(heads))
			if i != j {
				a, c := b.Commit(heads[i], heads[j]), b.Commit(heads[j], heads[i])
				heads[i], heads[j] = a, c
			}
		case r < 9 && len(heads) >= 3: // octopus of three lines
			m := b.Commit(heads[0], heads[1], heads[2])
			heads = append([]int{m}, heads[3:]...)
		case len(heads) >= 2: // merge one line back
			j := 1 + rng.IntN(len(heads)-1)
			heads[0] = b.Commit(heads[0], heads[j])
			heads = append(heads[:j], heads[j+1:]...)
		}
	}
	if len(heads) > 1 {
		return b.Commit(heads...)
	}
	return heads[0]
}

// BisectResult is what a real `git bisect run` did.
type BisectResult struct {
	Tested  []string // commits in the order git checked them out
	Culprit string   // "… is the first bad commit", if found
	Skipped []string // "could be any of" list, if only skips were left
	Output  string
}

// BisectRun runs real `git bisect start <startArgs>` then `git bisect run sh
// -c script` in dir and reports the commits it tested. The script sees the
// commit under test as HEAD; each test is logged before script runs.
func BisectRun(t testing.TB, dir string, startArgs []string, script string) BisectResult {
	t.Helper()
	logf := filepath.Join(t.TempDir(), "tested")
	Git(t, dir, append([]string{"bisect", "start"}, startArgs...)...)
	defer Git(t, dir, "bisect", "reset")
	wrapped := fmt.Sprintf("git rev-parse HEAD >> %q; %s", logf, script)
	cmd := exec.Command("git", "bisect", "run", "sh", "-c", wrapped)
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	res := BisectResult{Output: string(out)}
	if data, err := os.ReadFile(logf); err == nil {
		res.Tested = strings.Fields(string(data))
	}
	lines := strings.Split(res.Output, "\n")
	for i, line := range lines {
		if sha, ok := strings.CutSuffix(line, " is the first bad commit"); ok {
			res.Culprit = sha
		}
		if strings.HasPrefix(line, "The first bad commit could be any of:") {
			for _, l := range lines[i+1:] {
				if len(l) != 40 {
					break
				}
				res.Skipped = append(res.Skipped, l)
			}
		}
	}
	return res
}
