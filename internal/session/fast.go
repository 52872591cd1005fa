package session

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/search"
)

// fast is --strategy fast: git bisect's choices over the commits that can
// change the kernel. A commit whose change (against its first parent)
// touches no file a build of this run read, and nothing of the build
// system, builds its parent's kernel: like a commit outside the paths of a
// path-limited bisect, it links the graph and is never tested, so a
// search takes log2 of the distinct kernels in the range, not of its
// commits. The builds' inputs grow as the run builds, and the marks with
// them.
//
// The marks only choose what to test; the answer does not rest on them:
// the culprit was tested, and each of its parents was tested or is the
// same kernel as a commit that tested good, proved as a build would (their
// trees differ in no file that commit's build read). A parent that cannot
// be proved is tested next; after maxUnproved of those the marks are off
// and the search is classic's.
type fast struct {
	nodes       []search.Commit     // the range, TreeSame where the paths say
	line        []string            // the range oldest first if it is a line (plan.go)
	files       map[string][]string // what each commit changes
	bad         string
	firstParent bool

	reads    kbuild.Reads    // every file a build of the run read, with the targets that depend on it
	last     string          // the commit of the latest build: what the build dir holds
	read     map[string]bool // kernels whose inputs are in
	unproved map[string]bool // parents the end could not prove: tested
	off      string          // why the marks are off ("" while on)
	marked   map[string]bool // candidates marked: the same kernel as a parent
	classic  *search.Classic
}

// maxUnproved bounds the parents tested because the marks were wrong
// about them before the search goes on without marks.
const maxUnproved = 3

func newFast(nodes []search.Commit, files map[string][]string, p Params) (*fast, error) {
	f := &fast{nodes: nodes, line: line(nodes, p.Bad, p.FirstParent), files: files, bad: p.Bad, firstParent: p.FirstParent,
		reads: kbuild.NewReads(map[string]int{}), read: map[string]bool{}, unproved: map[string]bool{}}
	return f, f.mark()
}

// Decide implements search.Strategy.
func (f *fast) Decide(obs []search.Observation) (search.Decision, error) {
	return f.classic.Decide(obs)
}

// mark redoes the marks from what the builds read so far: none before the
// first build says.
func (f *fast) mark() error {
	nodes := slices.Clone(f.nodes)
	f.marked = map[string]bool{}
	for i, n := range nodes {
		if len(f.reads.Inputs) == 0 || f.off != "" || n.TreeSame || n.ID == f.bad || f.unproved[n.ID] || f.changesKernel(n.ID) {
			continue
		}
		nodes[i].TreeSame = true
		f.marked[n.ID] = true
	}
	g, err := search.NewGraph(nodes, f.bad, f.firstParent)
	if err != nil {
		return err
	}
	f.classic = search.NewClassic(g, f.firstParent)
	return nil
}

// learner is a search over kernels, taught by each step's build what it
// read (fast, cells).
type learner interface {
	learn(st journal.Step) error
	sameKernel() int                     // candidates taken for their parent's kernel
	neverBuilt(steps []journal.Step) int // of those, the ones no step evaluated
}

// sameKernel counts the marked candidates.
func (f *fast) sameKernel() int { return len(f.marked) }

// neverBuilt counts the marked candidates no step evaluated.
func (f *fast) neverBuilt(steps []journal.Step) int { return unevaluated(f.marked, steps) }

// unevaluated counts the commits of set no step evaluated.
func unevaluated(set map[string]bool, steps []journal.Step) int {
	evaluated := map[string]bool{}
	for _, st := range steps {
		evaluated[st.Commit] = true
	}
	n := 0
	for c := range set {
		if !evaluated[c] {
			n++
		}
	}
	return n
}

// changesKernel says whether a commit's change touches a file a build
// read, or the build system.
func (f *fast) changesKernel(id string) bool { return touchesBuild(f.files, id, f.reads) }

// touchesBuild says whether commit id's change (files: what each commit
// changes) touches a file the builds read or the build system they used
// (kbuild's Affects); an unknown change may touch anything.
func touchesBuild(files map[string][]string, id string, reads kbuild.Reads) bool {
	changed, ok := files[id]
	if !ok {
		return true
	}
	return slices.ContainsFunc(changed, reads.Affects)
}

// learn takes in what the build of a step's kernel read; the marks are
// redone when that adds files.
func (f *fast) learn(st journal.Step) error {
	k := st.Evidence.Kernel
	if st.State != journal.StateDone || k == "" {
		return nil
	}
	if st.Build != nil {
		f.last = st.Commit
	}
	if f.read[k] {
		return nil
	}
	f.read[k] = true
	inputs, ok := kbuild.ReadInputs(k)
	if !ok {
		return nil // an artifact from before firstbad kept its inputs
	}
	grew := false
	all := f.reads.Inputs
	for p, n := range inputs {
		if all[p] == 0 {
			grew = true
		}
		all[p] = max(all[p], n)
	}
	if !grew {
		return nil
	}
	f.reads = kbuild.NewReads(all)
	return f.mark()
}

// cheaper is the commit to test next: next, or one that splits the
// candidates almost as evenly and recompiles less from what the build dir
// holds (search.Cheapest), with the weights of both (see recompiles) and
// the most targets a build has (what a weight means at most).
func (f *fast) cheaper(ctx context.Context, repo *git.Repo, obs []search.Observation, next string) (choice string, weight, instead, targets int) {
	ranked, err := f.classic.Ranked(obs)
	if err != nil || len(ranked) < 2 || f.last == "" || len(f.reads.Inputs) == 0 {
		return next, -1, -1, 0
	}
	weights := map[string]int{} // each a git diff-tree: asked once
	cost := func(commit string) int {
		if _, ok := weights[commit]; !ok {
			weights[commit] = f.recompiles(ctx, repo, commit)
		}
		return weights[commit]
	}
	choice, weight = search.Cheapest(ranked, next, cost)
	return choice, weight, cost(next), f.targets()
}

// targets is the most targets any input has: every object depends on the
// kernel's config headers, so about the build's objects.
func (f *fast) targets() int {
	most := 0
	for _, n := range f.reads.Inputs {
		most = max(most, n)
	}
	return most
}

// recompiles weighs what make rebuilds to go from the latest build to
// commit: for each file that differs, the targets it feeds (fileWeight).
// Targets that depend on several changed files count once for each, so
// the weight ranks candidates; at most the build's targets are rebuilt.
func (f *fast) recompiles(ctx context.Context, repo *git.Repo, commit string) int {
	changed, err := repo.DiffNames(ctx, f.last, commit)
	if err != nil {
		return math.MaxInt32
	}
	total := 0
	for _, p := range changed {
		total += f.fileWeight(p)
	}
	return total
}

// prove checks the culprit's parents inside the range: each good as git
// bisect would take it (tested good, or an ancestor of a commit that
// tested good), or the same kernel as a commit that tested good. A parent
// that is none of these was only marked, never seen: it is to be tested
// (retry true, with why) and the search goes on.
func (f *fast) prove(ctx context.Context, repo *git.Repo, culprit string, obs []search.Observation, steps []journal.Step) (retry bool, why string, err error) {
	if f.off != "" {
		return false, "", nil
	}
	good := f.goodByAncestry(obs)
	i := slices.IndexFunc(f.nodes, func(n search.Commit) bool { return n.ID == culprit })
	if i < 0 {
		return false, "", nil
	}
	for _, parent := range f.nodes[i].Parents {
		if _, in := good[parent]; !in || good[parent] || f.unproved[parent] {
			// Outside the range (a good endpoint's, as git takes it),
			// good, or already unmarked for a test: what the search
			// concluded with it testable stands.
			continue
		}
		ok, err := sameAsGood(ctx, repo, parent, steps)
		if err != nil || ok {
			if err != nil {
				return false, "", err
			}
			continue
		}
		f.unproved[parent] = true
		why = fmt.Sprintf("the culprit's parent %s was not tested and is not provably the same kernel as a commit that tested good: testing it", short(parent))
		if len(f.unproved) > maxUnproved {
			f.off = fmt.Sprintf("%d parents of would-be culprits were not the kernels the marks said: searching over every commit from here", len(f.unproved))
			why = f.off
		}
		return true, why, f.mark()
	}
	return false, "", nil
}

// goodByAncestry maps every commit of the range to whether it is good as
// git bisect takes it: observed good, or an ancestor of one observed good.
func (f *fast) goodByAncestry(obs []search.Observation) map[string]bool {
	parents := make(map[string][]string, len(f.nodes))
	good := make(map[string]bool, len(f.nodes))
	for _, n := range f.nodes {
		parents[n.ID], good[n.ID] = n.Parents, false
	}
	var stack []string
	for _, o := range obs {
		if o.Verdict == outcome.Good {
			stack = append(stack, o.Commit)
		}
	}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen, in := good[c]; !in || seen {
			continue
		}
		good[c] = true
		stack = append(stack, parents[c]...)
	}
	return good
}

// sameAsGood says whether commit builds the same kernel as a commit that
// tested good: their trees differ in no file that commit's build read and
// in nothing of the build system (kbuild would recompile nothing).
func sameAsGood(ctx context.Context, repo *git.Repo, commit string, steps []journal.Step) (bool, error) {
	for _, st := range steps {
		if st.State != journal.StateDone || st.Verdict != "good" || st.Evidence.Kernel == "" || len(st.Evidence.BuildFixes) > 0 {
			continue
		}
		changed, err := repo.DiffNames(ctx, st.Commit, commit)
		if err != nil {
			return false, err
		}
		if read, ok := kbuild.ReadBy(st.Evidence.Kernel, changed); ok && len(read) == 0 {
			return true, nil
		}
	}
	return false, nil
}
