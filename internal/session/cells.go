package session

import (
	"slices"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/search"
)

// cells is --strategy bayes over kernels: a commit proven to build the
// same kernel as its first parent cannot be the first bad one, so it
// shares its parent's posterior cell and the runs decide among the
// commits that changed the kernel (a commit of the cell still tests its
// kernel). Unlike fast's marks these are proofs, from the run's own
// builds: a commit joined to a built commit T by first-parent changes
// that touch no file T's build read and nothing of the build system
// builds T's kernel (kbuild would recompile nothing). No answer rests on
// a guess, so none is checked at the end.
type cells struct {
	nodes       []search.Commit
	files       map[string][]string // what each commit changes against its first parent
	bad         string
	firstParent bool
	opt         search.BayesOptions
	same        map[string]bool // proven the same kernel as the first parent
	read        map[string]bool // kernels whose proofs are in
	bayes       *search.Bayes
}

func newCells(nodes []search.Commit, files map[string][]string, p Params, opt search.BayesOptions) (*cells, error) {
	c := &cells{nodes: nodes, files: files, bad: p.Bad, firstParent: p.FirstParent, opt: opt, same: map[string]bool{}, read: map[string]bool{}}
	return c, c.rebuild()
}

// Decide implements search.Strategy.
func (c *cells) Decide(obs []search.Observation) (search.Decision, error) { return c.bayes.Decide(obs) }

// SetCosts replaces the cost model, here and in any rebuilt search.
func (c *cells) SetCosts(x search.Costs) {
	if x.Run > 0 {
		c.opt.Costs = x
	}
	c.bayes.SetCosts(x)
}

// rebuild makes the Bayesian search over the graph with the proven
// commits marked SameKernel: no hypothesis, still testable (a built one
// is the cheapest test of its kernel). The bad endpoint keeps its
// hypothesis, as in fast.
func (c *cells) rebuild() error {
	nodes := slices.Clone(c.nodes)
	for i, n := range nodes {
		nodes[i].SameKernel = c.same[n.ID] && n.ID != c.bad
	}
	g, err := search.NewGraph(nodes, c.bad, c.firstParent)
	if err != nil {
		return err
	}
	c.bayes = search.NewBayes(g, c.firstParent, c.opt)
	return nil
}

// learn takes in what a step's build read: the commits it proves to build
// the same kernel as their first parents.
func (c *cells) learn(st journal.Step) error {
	k := st.Evidence.Kernel
	if st.State != journal.StateDone || k == "" || len(st.Evidence.BuildFixes) > 0 || c.read[k] {
		return nil
	}
	c.read[k] = true
	inputs, ok := kbuild.ReadInputs(k)
	if !ok {
		return nil
	}
	grew := false
	for _, id := range sameKernelAround(c.nodes, c.files, st.Commit, kbuild.NewReads(inputs)) {
		if !c.same[id] {
			c.same[id], grew = true, true
		}
	}
	if !grew {
		return nil
	}
	return c.rebuild()
}

// sameKernelAround lists the commits proven, by the build of commit t
// (what it read: reads), to build the same kernel as their first parent:
// those on first-parent links from t whose own change touches nothing it
// read and nothing of the build system it used, with every link between them
// and t such a change too. A commit whose changes are unknown ends a walk.
func sameKernelAround(nodes []search.Commit, files map[string][]string, t string, reads kbuild.Reads) []string {
	first := map[string]string{}
	children := map[string][]string{}
	for _, n := range nodes {
		if len(n.Parents) > 0 {
			first[n.ID] = n.Parents[0]
			children[n.Parents[0]] = append(children[n.Parents[0]], n.ID)
		}
	}
	unread := func(id string) bool { return !touchesBuild(files, id, reads) }
	var out []string
	// Down: t is its parent's kernel, which is its parent's... (a parent
	// outside the range has no known change: the walk ends there).
	for cur := t; unread(cur); cur = first[cur] {
		out = append(out, cur)
	}
	// Up: a child that changes nothing t read has t's kernel.
	for todo := []string{t}; len(todo) > 0; {
		x := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, ch := range children[x] {
			if unread(ch) {
				out = append(out, ch)
				todo = append(todo, ch)
			}
		}
	}
	return out
}

// sameKernel counts the commits proven the same kernel as their parent.
func (c *cells) sameKernel() int { return len(c.same) }

// neverBuilt counts the proven commits no step evaluated.
func (c *cells) neverBuilt(steps []journal.Step) int { return unevaluated(c.same, steps) }
