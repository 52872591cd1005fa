package search_test

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/gittest"
	"github.com/firstbad/firstbad/internal/search"
)

// drive runs the strategy against an oracle the way a session does.
func drive(t *testing.T, s search.Strategy, oracle func(string) outcome.Verdict) ([]string, search.Decision) {
	t.Helper()
	var obs []search.Observation
	var tested []string
	for range 1000 {
		d, err := s.Decide(obs)
		if err != nil {
			t.Fatal(err)
		}
		if d.Done {
			return tested, d
		}
		tested = append(tested, d.Next)
		obs = append(obs, search.Observation{Commit: d.Next, Verdict: oracle(d.Next)})
	}
	t.Fatal("search did not finish")
	return nil, search.Decision{}
}

type gitCase struct {
	name        string
	repo        *gittest.Repo
	bad         string
	goods       []string
	firstParent bool
	paths       []string
	skips       []string
	every       int // test every n-th possible culprit (1 or 0: all), at most -git-culprits of them
}

// The comparisons with real git bisect run spawn a git per step and are
// slow here: the test suite tries a few culprits per graph (all of them in
// -short mode for the smallest graphs only); bench/bisect-vs-git.sh sweeps
// hundreds of graphs and every culprit.
var (
	gitGraphs   = flag.Int("git-graphs", 3, "random merge graphs compared with git bisect per path-limited test")
	gitCulprits = flag.Int("git-culprits", 6, "possible culprits tried per graph (0: every one)")
)

// gitCompare skips a comparison with git in -short mode unless it is cheap.
func gitCompare(t *testing.T, cheap bool) {
	t.Helper()
	if testing.Short() && !cheap {
		t.Skip("compares with real git bisect run: not in -short mode")
	}
}

// compare checks, for every possible culprit, that the classic strategy
// tests the same commits in the same order as real `git bisect run` and
// reaches the same conclusion.
func compare(t *testing.T, c gitCase) {
	t.Helper()
	ctx := context.Background()
	r := &git.Repo{Dir: c.repo.Dir}
	commits, err := r.RevList(ctx, git.Range{Bad: c.bad, Good: c.goods, FirstParent: c.firstParent, Paths: c.paths})
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]search.Commit, len(commits))
	for i, cm := range commits {
		nodes[i] = search.Commit{ID: cm.ID, Parents: cm.Parents, Time: cm.Time, TreeSame: cm.TreeSame}
	}
	g, err := search.NewGraph(nodes, c.bad, c.firstParent)
	if err != nil {
		t.Fatal(err)
	}
	start := []string{}
	if c.firstParent {
		start = append(start, "--first-parent")
	}
	start = append(append(start, c.bad), c.goods...)
	if len(c.paths) > 0 {
		start = append(append(start, "--"), c.paths...)
	}
	skip := map[string]bool{}
	for _, s := range c.skips {
		skip[s] = true
	}
	same := map[string]bool{}
	for _, cm := range commits {
		same[cm.ID] = cm.TreeSame
	}
	for _, culprit := range sample(g.IDs(), func(id string) bool { return !skip[id] && !same[id] }, c.every, *gitCulprits) {
		t.Run(fmt.Sprintf("%s/%s", c.name, culprit[:8]), func(t *testing.T) {
			isBad := func(id string) bool {
				ok, err := r.IsAncestor(ctx, culprit, id)
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}
			script := fmt.Sprintf("git merge-base --is-ancestor %s HEAD && exit 1; exit 0", culprit)
			if len(c.skips) > 0 {
				script = fmt.Sprintf("case $(git rev-parse HEAD) in %s) exit 125;; esac; %s", strings.Join(c.skips, "|"), script)
			}
			want := gittest.BisectRun(t, c.repo.Dir, start, script)
			tested, d := drive(t, search.NewClassic(g, c.firstParent), func(id string) outcome.Verdict {
				if skip[id] {
					return outcome.Skip
				}
				if isBad(id) {
					return outcome.Bad
				}
				return outcome.Good
			})
			if diff := cmp.Diff(want.Tested, tested); diff != "" {
				t.Fatalf("tested sequence differs from git bisect (-git +firstbad):\n%s\ngit said:\n%s", diff, want.Output)
			}
			if d.Culprit != want.Culprit {
				t.Errorf("culprit %q, git found %q", d.Culprit, want.Culprit)
			}
			gotAmb, wantAmb := slices.Sorted(slices.Values(d.Ambiguous)), slices.Sorted(slices.Values(want.Skipped))
			if diff := cmp.Diff(wantAmb, gotAmb); diff != "" {
				t.Errorf("ambiguous set differs (-git +firstbad):\n%s", diff)
			}
		})
	}
}

// sample picks the possible culprits to try: those ok accepts, every n-th,
// at most max of them spread evenly (0: no bound).
func sample(ids []string, ok func(string) bool, every, max int) []string {
	var all []string
	for i, id := range ids {
		if ok(id) && (every <= 1 || i%every == 0) {
			all = append(all, id)
		}
	}
	if max <= 0 || len(all) <= max {
		return all
	}
	out := make([]string, 0, max)
	for i := range max {
		out = append(out, all[i*(len(all)-1)/(max-1)])
	}
	return out
}

func TestClassicMatchesGitLinear(t *testing.T) {
	gitCompare(t, false)
	var b gittest.Builder
	tip := b.Linear(-1, 100)
	r := b.Write(t)
	compare(t, gitCase{name: "linear", repo: r, bad: r.SHAs[tip], goods: []string{r.SHAs[0]}, every: 10})
}

func TestClassicMatchesGitMerges(t *testing.T) {
	gitCompare(t, false)
	// Every possible culprit of the first graph; a sample of the others.
	for i, seed := range []uint64{1, 2, 3} {
		var b gittest.Builder
		root := b.Linear(-1, 3)
		tip := b.MergeHeavy(root, 45, seed)
		r := b.Write(t)
		name := fmt.Sprintf("seed%d", seed)
		every := 1 + 8*i
		compare(t, gitCase{name: name, repo: r, bad: r.SHAs[tip], goods: []string{r.SHAs[1]}, every: every})
		compare(t, gitCase{name: name + "-first-parent", repo: r, bad: r.SHAs[tip], goods: []string{r.SHAs[1]}, firstParent: true, every: every + 2})
	}
}

func TestClassicMatchesGitTwoGoods(t *testing.T) {
	gitCompare(t, false)
	// A good on a side branch: two goods, both ancestors of bad.
	var b gittest.Builder
	base := b.Linear(-1, 5)
	side := b.Linear(base, 8)
	main := b.Linear(base, 10)
	m := b.Commit(main, side)
	tip := b.Linear(m, 10)
	r := b.Write(t)
	compare(t, gitCase{name: "two-goods", repo: r, bad: r.SHAs[tip], goods: []string{r.SHAs[side-3], r.SHAs[main-6]}, every: 3})
}

func TestClassicMatchesGitSkips(t *testing.T) {
	gitCompare(t, false)
	var b gittest.Builder
	tip := b.Linear(-1, 60)
	r := b.Write(t)
	var skips []string
	for _, n := range []int{30, 31, 32, 33, 15, 45, 46} {
		skips = append(skips, r.SHAs[n])
	}
	compare(t, gitCase{name: "skips", repo: r, bad: r.SHAs[tip], goods: []string{r.SHAs[0]}, skips: skips, every: 3})

	var mb gittest.Builder
	root := mb.Linear(-1, 2)
	mtip := mb.MergeHeavy(root, 40, 7)
	mr := mb.Write(t)
	skips = nil
	for n := 5; n < mtip; n += 3 {
		skips = append(skips, mr.SHAs[n])
	}
	compare(t, gitCase{name: "merge-skips", repo: mr, bad: mr.SHAs[mtip], goods: []string{mr.SHAs[0]}, skips: skips, every: 2})
}

func TestClassicMatchesGitPaths(t *testing.T) {
	gitCompare(t, false)
	var b gittest.Builder
	prev := b.CommitFiles("root", map[string]string{"a/x": "0", "b/y": "0"})
	for i := 1; i < 80; i++ {
		path := "b/y"
		if i%3 == 0 {
			path = "a/x"
		}
		prev = b.CommitFiles(fmt.Sprintf("commit %d", i), map[string]string{path: fmt.Sprint(i)}, prev)
	}
	r := b.Write(t)
	// Culprits outside the path can't be found by git either; compare
	// only over the path-limited candidates, which compare() enumerates.
	compare(t, gitCase{name: "paths", repo: r, bad: r.SHAs[prev], goods: []string{r.SHAs[0]}, paths: []string{"a"}, every: 2})
}

func TestClassicMatchesGitPathsMerges(t *testing.T) {
	gitCompare(t, false)
	for seed := uint64(1); seed <= uint64(*gitGraphs); seed++ {
		b := gittest.Builder{Files: []string{"a/x", "b/y", "c/z"}, FileSeed: seed}
		root := b.Linear(-1, 2)
		tip := b.MergeHeavy(root, 30, seed)
		r := b.Write(t)
		name := fmt.Sprintf("paths-seed%d", seed)
		compare(t, gitCase{name: name, repo: r, bad: r.SHAs[tip], goods: []string{r.SHAs[0]}, paths: []string{"a"}, every: 2})
		if seed%2 == 0 {
			compare(t, gitCase{name: name + "-first-parent", repo: r, bad: r.SHAs[tip], goods: []string{r.SHAs[0]}, paths: []string{"a"}, firstParent: true, every: 3})
		}
	}
}

func TestClassicMatchesGitPathsSideBranch(t *testing.T) {
	gitCompare(t, true)
	// A side branch adds a file under the limited path; the merge is
	// TREESAME to the side branch, so git walks the side branch only and
	// never sees the main line's commits (which touch other paths).
	var b gittest.Builder
	c0 := b.CommitFiles("c0", map[string]string{"a/x": "0", "b/y": "0"})
	c1 := b.CommitFiles("c1", map[string]string{"b/y": "1"}, c0)
	c2 := b.CommitFiles("c2", map[string]string{"b/y": "2"}, c1)
	c3 := b.CommitFiles("c3", map[string]string{"b/y": "3"}, c2)
	s1 := b.CommitFiles("s1 adds a/bad", map[string]string{"a/bad": "bad"}, c1)
	s2 := b.CommitFiles("s2", map[string]string{"b/z": "4"}, s1)
	m := b.CommitFiles("merge", map[string]string{"a/bad": "bad", "b/z": "4"}, c3, s2)
	tip := b.CommitFiles("c5", map[string]string{"b/y": "5"}, m)
	r := b.Write(t)
	compare(t, gitCase{name: "side-branch", repo: r, bad: r.SHAs[tip], goods: []string{r.SHAs[c0]}, paths: []string{"a"}})
}
