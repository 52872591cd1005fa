package session

import (
	"math"
	"path"
	"slices"
	"strings"

	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/search"
)

// planning is on but in tests that measure what it saves.
var planning = true

// line orders the range oldest first when it is a line — no merge, one
// chain from the bad end down; with firstParent, the chain of first
// parents, which is all such a search tests: the commits a plan can weigh
// by the changes between them. Nil otherwise.
func line(nodes []search.Commit, bad string, firstParent bool) []string {
	parent := map[string]string{}
	for _, n := range nodes {
		if len(n.Parents) > 1 && !firstParent {
			return nil
		}
		if len(n.Parents) > 0 {
			parent[n.ID] = n.Parents[0]
		}
	}
	in := map[string]bool{}
	for _, n := range nodes {
		in[n.ID] = true
	}
	var out []string
	for c := bad; in[c]; c = parent[c] {
		out = append(out, c)
		delete(in, c)
	}
	if len(out) != len(nodes) && !firstParent {
		return nil
	}
	slices.Reverse(out)
	return out
}

// The plan's costs, in steps (a step's config, boot and test): a build
// costs planFixed (make's walk, the link) and planWhole's share of its
// targets. Here a whole build of a small config is ~500 s at 2 jobs, an
// empty one ~20 s, a step ~10-15 s besides. Constants, not the run's
// timings: a second run of the same bisect must choose the same steps to
// find each kernel in the artifact cache (a warm run's builds take seconds
// and would make every build look free), and one run's first builds say
// little of its later ones.
const (
	planFixed = 2.0
	planWhole = 40.0
)

// plan is the commit search.Plan chooses on a line of kernels, with the
// search's expected cost from here and from git's midpoint (in steps);
// ok is false where it cannot weigh the choices (merges, skipped commits,
// too many kernels, the build dir's commit off the line, no build's inputs
// yet).
func (f *fast) plan(obs []search.Observation) (commit string, expect, mid float64, ok bool) {
	if !planning {
		return "", 0, 0, false
	}
	pos := map[string]int{}
	for i, c := range f.line {
		pos[c] = i
	}
	at, built := pos[f.last]
	if len(f.line) == 0 || !built || f.targets() == 0 {
		return "", 0, 0, false
	}
	ranked, err := f.classic.Ranked(obs)
	if err != nil || len(ranked) < 2 {
		return "", 0, 0, false
	}
	testable := map[string]bool{}
	for _, r := range ranked {
		testable[r.Commit] = true
	}
	lo, hi, ok := bounds(obs, pos, pos[f.bad])
	if !ok {
		return "", 0, 0, false
	}
	// The kernels: the good end, each testable commit between, the bad
	// end; and last, where the build dir is.
	kernels := []int{lo}
	for p := lo + 1; p < hi; p++ {
		if testable[f.line[p]] {
			kernels = append(kernels, p)
		}
	}
	kernels = append(kernels, hi)
	m := len(kernels) - 1
	if m < 2 || m > search.MaxPlanKernels {
		return "", 0, 0, false
	}
	kernels = append(kernels, at)
	weights, most := f.lineWeights(kernels), f.targets()
	cost := func(i, j int) float64 {
		return planFixed + (planWhole-planFixed)*float64(min(weights[i][j], most))/float64(most)
	}
	next, expect, mid := search.Plan(m, m+1, cost, 1)
	return f.line[kernels[next]], expect, mid, true
}

// bounds are the line positions of the newest good commit (-1: the good
// end below the line) and the oldest bad one (bad if none tested bad); ok
// is false once a commit on the line was skipped.
func bounds(obs []search.Observation, pos map[string]int, bad int) (lo, hi int, ok bool) {
	lo, hi = -1, bad
	for _, o := range obs {
		p, in := pos[o.Commit]
		switch {
		case !in:
		case o.Verdict == outcome.Good:
			lo = max(lo, p)
		case o.Verdict == outcome.Bad:
			hi = min(hi, p)
		default:
			return 0, 0, false
		}
	}
	return lo, hi, true
}

// lineWeights weighs, for each pair of the given line positions, what make
// rebuilds to go from one to the other: the files changed between them,
// each counted once (fileWeight). One walk up the line from each position
// weighs all its pairs.
func (f *fast) lineWeights(at []int) [][]int {
	weight := map[string]int{}
	w := make([][]int, len(at))
	for i := range w {
		w[i] = make([]int, len(at))
	}
	for i, a := range at {
		last := a
		for _, b := range at {
			last = max(last, b)
		}
		seen := map[string]bool{}
		total := 0
		sums := map[int]int{} // position -> weight from a
		for p := a + 1; p <= last; p++ {
			for _, file := range f.files[f.line[p]] {
				if seen[file] {
					continue
				}
				seen[file] = true
				if _, ok := weight[file]; !ok {
					weight[file] = f.fileWeight(file)
				}
				total += weight[file]
			}
			sums[p] = total
		}
		for j, b := range at {
			if b > a {
				w[i][j], w[j][i] = sums[b], sums[b]
			}
		}
	}
	return w
}

// fileWeight is about how many targets make rebuilds when file changes:
// those that depend on it if a build read it; of the build system, none
// for a Kconfig file (the config seldom changes with it, and the build
// says so when it does), a directory's objects for its own makefile, and
// every target for the rest (the top makefile, an arch's, scripts,
// objtool's). A file no build uses weighs nothing.
func (f *fast) fileWeight(file string) int {
	if n := f.reads.Inputs[file]; n > 0 {
		return n
	}
	switch {
	case !f.reads.Affects(file), kbuild.KconfigFile(file):
		return 0
	case dirMakefile(file):
		return max(1, f.dirObjects(path.Dir(file)))
	}
	return f.targets()
}

// dirMakefile says whether file is a directory's own makefile, not the top
// one, an arch's, or one of scripts/ or tools/ (which every target uses).
func dirMakefile(file string) bool {
	base, dir := path.Base(file), path.Dir(file)
	if !strings.HasPrefix(base, "Makefile") && !strings.HasPrefix(base, "Kbuild") {
		return false
	}
	top := dir == "." || strings.HasPrefix(dir, "scripts") || strings.HasPrefix(dir, "tools") ||
		(strings.HasPrefix(dir, "arch/") && strings.Count(dir, "/") == 1)
	return !top
}

// dirObjects counts the sources read under dir: about its objects.
func (f *fast) dirObjects(dir string) int {
	n := 0
	for p := range f.reads.Inputs {
		if strings.HasPrefix(p, dir+"/") && (strings.HasSuffix(p, ".c") || strings.HasSuffix(p, ".S")) {
			n++
		}
	}
	return n
}

// round1 rounds to a tenth, for the log.
func round1(x float64) float64 { return math.Round(x*10) / 10 }
