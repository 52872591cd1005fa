// Package search chooses which commit to test next. It is pure logic over a
// candidate graph and observations: no git, make or QEMU here, which is what
// lets it be tested exhaustively and its strategies swapped.
package search

import (
	"container/heap"
	"fmt"
)

// Commit is a node handed to NewGraph.
type Commit struct {
	ID      string
	Parents []string // all parents; those outside the graph are ignored
	Time    int64    // committer time: git walks in this order
	// TreeSame marks a commit that does not touch the paths a bisect is
	// limited to: it links the graph but is never a candidate.
	TreeSame bool
	// SameKernel marks a commit proven to build its first parent's
	// kernel: never the first bad one, but still worth a test (any
	// commit of a kernel tests it; one already built is cheap). The
	// Bayesian strategy reads it.
	SameKernel bool
}

// Graph is the initial candidate set: the commits reachable from the bad
// endpoint and from none of the good ones, with their parent links inside
// the set. It never changes; observations narrow it.
type Graph struct {
	ids     []string
	parents [][]int
	time    []int64
	same    []bool
	kernel  []bool // SameKernel
	index   map[string]int
	bad     int
	// first is each commit's first parent inside the graph (-1 if it is
	// outside), firstID its ID either way ("" for a root), and merge
	// marks commits with more than one parent (inside the graph or not).
	first   []int
	firstID []string
	merge   []bool
}

// NewGraph builds a graph from commits (git's order) whose tip is bad. With
// firstParent only first-parent links are kept, as `git bisect
// --first-parent` walks.
func NewGraph(commits []Commit, bad string, firstParent bool) (*Graph, error) {
	g := &Graph{index: make(map[string]int, len(commits)), bad: -1}
	for i, c := range commits {
		if _, dup := g.index[c.ID]; dup {
			return nil, fmt.Errorf("commit %s listed twice", c.ID)
		}
		g.index[c.ID] = i
		g.ids = append(g.ids, c.ID)
		g.time = append(g.time, c.Time)
		g.same = append(g.same, c.TreeSame)
		g.kernel = append(g.kernel, c.SameKernel)
		fid := ""
		if len(c.Parents) > 0 {
			fid = c.Parents[0]
		}
		g.firstID = append(g.firstID, fid)
		g.merge = append(g.merge, len(c.Parents) > 1)
	}
	g.first = make([]int, len(commits))
	for i, fid := range g.firstID {
		g.first[i] = -1
		if j, ok := g.index[fid]; ok && fid != "" {
			g.first[i] = j
		}
	}
	g.parents = make([][]int, len(commits))
	for i, c := range commits {
		ps := c.Parents
		if firstParent && len(ps) > 1 {
			ps = ps[:1]
		}
		for _, p := range ps {
			if j, ok := g.index[p]; ok {
				g.parents[i] = append(g.parents[i], j)
			}
		}
	}
	b, ok := g.index[bad]
	if !ok {
		return nil, fmt.Errorf("bad commit %s is not in the candidate set", bad)
	}
	g.bad = b
	return g, nil
}

// Len is the number of commits in the graph.
func (g *Graph) Len() int { return len(g.ids) }

// IDs returns the commits in the graph's order.
func (g *Graph) IDs() []string { return append([]string(nil), g.ids...) }

// Bad is the bad endpoint.
func (g *Graph) Bad() string { return g.ids[g.bad] }

// ancestors marks every commit reachable from the starts (inclusive).
func (g *Graph) ancestors(starts []int, mark []bool) {
	stack := append([]int(nil), starts...)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if mark[n] {
			continue
		}
		mark[n] = true
		stack = append(stack, g.parents[n]...)
	}
}

// candidates returns the commits reachable from bad and from no good, in
// the order git's revision walk from bad produces them (committer date,
// newest first; first-in first-out among equal dates; parents in order).
func (g *Graph) candidates(bad int, goods []int) []int {
	out := make([]bool, len(g.ids))
	g.ancestors(goods, out)
	if out[bad] {
		return nil
	}
	seen := make([]bool, len(g.ids))
	q := &walkQueue{time: g.time}
	seen[bad] = true
	q.push(bad)
	var list []int
	for q.Len() > 0 {
		n := heap.Pop(q).(walkItem).node
		list = append(list, n)
		for _, p := range g.parents[n] {
			if !seen[p] && !out[p] {
				seen[p] = true
				q.push(p)
			}
		}
	}
	return list
}

type walkItem struct {
	node int
	seq  int
}

// walkQueue orders like git's commit_list_insert_by_date: newest first, and
// among equal dates the one inserted first.
type walkQueue struct {
	items []walkItem
	time  []int64
	seq   int
}

func (q *walkQueue) Len() int { return len(q.items) }
func (q *walkQueue) Less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	if ta, tb := q.time[a.node], q.time[b.node]; ta != tb {
		return ta > tb
	}
	return a.seq < b.seq
}
func (q *walkQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *walkQueue) Push(x any)    { q.items = append(q.items, x.(walkItem)) }
func (q *walkQueue) Pop() any {
	it := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return it
}
func (q *walkQueue) push(n int) {
	heap.Push(q, walkItem{node: n, seq: q.seq})
	q.seq++
}
