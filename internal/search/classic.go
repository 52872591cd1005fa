package search

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/firstbad/firstbad/internal/outcome"
)

// Observation is one verdict about one commit, in the order it was made.
// GoodRuns and BadRuns count the runs behind it when there were several;
// both zero means one run that said Verdict.
type Observation struct {
	Commit   string
	Verdict  outcome.Verdict
	GoodRuns int
	BadRuns  int
}

// runs is the observation's run counts.
func (o Observation) runs() (good, bad int) {
	if o.GoodRuns+o.BadRuns > 0 {
		return o.GoodRuns, o.BadRuns
	}
	switch o.Verdict {
	case outcome.Good:
		return 1, 0
	case outcome.Bad:
		return 0, 1
	}
	return 0, 0
}

// Decision is what a strategy says after the observations so far.
type Decision struct {
	// Next is the commit to test, empty when Done.
	Next string
	// Done is set when the search is over: Culprit is the first bad
	// commit, or Ambiguous lists the commits that could be it because only
	// skipped commits separate good from bad.
	Done      bool
	Culprit   string
	Ambiguous []string
	// Remaining is the number of candidates left (the current bad included).
	Remaining int
	// StepsLeft estimates the tests still needed (log2 of Remaining).
	StepsLeft int

	// The Bayesian strategy also says:
	// Runs is how many runs the next step should make (0: the caller's
	// default).
	Runs int
	// Confidence is the posterior probability of the answer (of the top
	// candidate while the search goes on).
	Confidence float64
	// Posterior lists the most likely first bad commits, most likely first.
	Posterior []Candidate
	// FailProb estimates how often a run fails on a bad commit, and
	// FalseAlarm how often on a good one (learned, or as given).
	FailProb, FalseAlarm float64
	// NoTestable is set when Done and no candidate left touches the paths
	// the bisect is limited to (git: "No testable commit found"):
	// Ambiguous then lists the commits that could be the first bad one.
	NoTestable bool
	// Older is set (to the commit before the range) when the answer is
	// that the change is older than the range.
	Older string
	// Exhausted says why the search stopped short of the confidence asked
	// for (out of run budget, or nothing left to test); "" when it did not.
	Exhausted string
	// Misfit, with a culprit, is a commit whose runs the model behind the
	// answer explains only with a tiny probability: a range that is not
	// monotonic (bad, good, bad again) rather than a flaky test.
	Misfit *Misfit
}

// Misfit is a tested commit that does not fit the answer: above the
// culprit, all its runs passed; below it, all failed; either with
// probability P under the failure rates learned from the other runs.
type Misfit struct {
	Commit string
	Above  bool // a descendant of the culprit (else below it)
	Runs   int
	P      float64
	Rate   float64 // the rate learned without it: p above, f below
}

// ErrInconsistent is a commit observed both good and bad by a strategy that
// cannot hold both (a flaky test, or two changes in the range).
var ErrInconsistent = errors.New("a commit was both good and bad")

// Strategy chooses the next commit from the observations so far.
type Strategy interface {
	Decide(obs []Observation) (Decision, error)
}

// Classic makes the choice `git bisect` makes: the candidate whose count of
// reachable candidates is closest to half, with git's tie-breaking, its
// early halfway shortcut, and its pseudo-random step away from skipped
// commits. On a deterministic test it visits exactly the commits git visits.
type Classic struct {
	g           *Graph
	firstParent bool
}

// NewClassic returns the classic strategy over g.
func NewClassic(g *Graph, firstParent bool) *Classic {
	return &Classic{g: g, firstParent: firstParent}
}

// state folds observations the way refs/bisect does: the latest bad is the
// bad ref, every good is kept, skips are remembered.
func (c *Classic) state(obs []Observation) (bad int, goods []int, skipped map[int]bool, err error) {
	bad = c.g.bad
	skipped = map[int]bool{}
	for _, o := range obs {
		n, ok := c.g.index[o.Commit]
		if !ok {
			// A verdict outside the range (e.g. an endpoint's parent)
			// tells the graph nothing.
			continue
		}
		switch o.Verdict {
		case outcome.Good:
			goods = append(goods, n)
		case outcome.Bad:
			bad = n
		case outcome.Skip:
			skipped[n] = true
		default:
			return 0, nil, nil, fmt.Errorf("observation of %s: %v", o.Commit, o.Verdict)
		}
	}
	return bad, goods, skipped, nil
}

// Decide implements Strategy.
func (c *Classic) Decide(obs []Observation) (Decision, error) {
	bad, goods, skipped, err := c.state(obs)
	if err != nil {
		return Decision{}, err
	}
	list := c.g.candidates(bad, goods)
	if len(list) == 0 {
		return Decision{}, fmt.Errorf("%w: %s", ErrInconsistent, c.g.ids[bad])
	}
	testable := 0
	for _, n := range list {
		if !c.g.same[n] {
			testable++
		}
	}
	d := Decision{Remaining: testable, StepsLeft: stepsLeft(testable)}
	if testable == 0 {
		// No commit left touches the paths (none did, or every one that
		// does tested good): git stops with "No testable commit found".
		// The first bad commit is one of the others, which do not.
		d.Done, d.NoTestable = true, true
		for _, n := range list {
			d.Ambiguous = append(d.Ambiguous, c.g.ids[n])
		}
		return d, nil
	}
	if len(skipped) == 0 {
		best := c.bisect(list, false)[0]
		if best == bad {
			d.Done, d.Culprit = true, c.g.ids[bad]
			d.StepsLeft = 0
			return d, nil
		}
		d.Next = c.g.ids[best]
		return d, nil
	}
	// As bisect_next_all with skipped commits: all candidates by
	// distance, then managed_skipped.
	sorted := c.bisect(list, true)
	var tried, filtered []int
	if !skipped[sorted[0]] {
		filtered = sorted
	} else {
		for _, n := range sorted {
			if skipped[n] {
				tried = append(tried, n)
			} else {
				filtered = append(filtered, n)
			}
		}
		filtered = skipAway(filtered, bad)
	}
	if len(filtered) == 0 || filtered[0] == bad {
		d.Done = true
		d.StepsLeft = 0
		if len(tried) == 0 {
			d.Culprit = c.g.ids[bad]
			return d, nil
		}
		for _, n := range tried {
			d.Ambiguous = append(d.Ambiguous, c.g.ids[n])
		}
		d.Ambiguous = append(d.Ambiguous, c.g.ids[bad])
		return d, nil
	}
	d.Next = c.g.ids[filtered[0]]
	return d, nil
}

func stepsLeft(n int) int {
	if n <= 1 {
		return 0
	}
	return int(math.Ceil(math.Log2(float64(n))))
}

// bisect is git's find_bisection over list (git's walk order). Without all,
// it returns the single best commit (possibly found by the halfway
// shortcut); with all, every candidate sorted by distance, best first.
func (c *Classic) bisect(list []int, all bool) []int {
	rev := reversed(list)
	ws := c.newWeights(rev)
	if n, ok := ws.count(rev, all); ok {
		return []int{n}
	}
	if !all {
		return []int{ws.best(rev)}
	}
	return ws.sorted(rev)
}

// reversed is list backwards: find_bisection reverses the walk order.
func reversed(list []int) []int {
	rev := make([]int, len(list))
	for i, n := range list {
		rev[len(list)-1-i] = n
	}
	return rev
}

// Ranked is a candidate for the next step with git's distance for it: the
// candidates on the smaller side of the split it makes.
type Ranked struct {
	Commit string
	Dist   int
}

// Ranked lists the candidates the next step could test, best split first,
// when no commit is skipped (none otherwise: git's step away from skipped
// commits decides then).
func (c *Classic) Ranked(obs []Observation) ([]Ranked, error) {
	bad, goods, skipped, err := c.state(obs)
	if err != nil || len(skipped) > 0 {
		return nil, err
	}
	rev := reversed(c.g.candidates(bad, goods))
	if len(rev) == 0 {
		return nil, nil
	}
	ws := c.newWeights(rev)
	ws.count(rev, true)
	var out []Ranked
	for _, n := range ws.sorted(rev) {
		out = append(out, Ranked{Commit: c.g.ids[n], Dist: ws.dist(n)})
	}
	return out, nil
}

// Cheapest is the commit to test among the ranked ones whose split is
// within a tenth of the best's (at most the first eight): the one cost
// says is cheapest, next when it is among the cheapest. A split that much
// less even costs a fraction of a step; a build that recompiles a tenth of
// the kernel costs minutes.
func Cheapest(ranked []Ranked, next string, cost func(commit string) int) (string, int) {
	best := 0
	for _, r := range ranked {
		best = max(best, r.Dist)
	}
	choice, least := next, cost(next)
	for i, r := range ranked {
		if i == 8 || r.Dist*10 < best*9 {
			break
		}
		if r.Commit == next {
			continue
		}
		if c := cost(r.Commit); c < least {
			choice, least = r.Commit, c
		}
	}
	return choice, least
}

// weights is do_find_bisection's state over one candidate list: each
// candidate's count of reachable candidates, in slices indexed by node
// (maps made this the whole cost of a step on large histories).
type weights struct {
	g     *Graph
	in    []bool // on the list
	w     []int  // weight; -1 one interesting parent, -2 more, unknown
	nr    int    // candidates that count (not tree-same)
	seen  []uint32
	stamp uint32
	stack []int
}

func (c *Classic) newWeights(rev []int) *weights {
	ws := &weights{g: c.g, in: make([]bool, c.g.Len()), w: make([]int, c.g.Len())}
	for _, n := range rev {
		ws.in[n] = true
		if !c.g.same[n] {
			ws.nr++
		}
	}
	return ws
}

// interesting is n's parents on the list, in order.
func (ws *weights) interesting(n int) []int {
	var ps []int
	for _, p := range ws.g.parents[n] {
		if ws.in[p] {
			ps = append(ps, p)
		}
	}
	return ps
}

// count fills the weights as git does, and returns early with a commit
// that happens to be halfway when all is not set.
func (ws *weights) count(rev []int, all bool) (int, bool) {
	counted := 0
	for _, n := range rev {
		switch len(ws.interesting(n)) {
		case 0:
			// A tree-same root reaches nothing that counts: weight 0.
			if !ws.g.same[n] {
				ws.w[n] = 1
				counted++
			}
		case 1:
			ws.w[n] = -1
		default:
			ws.w[n] = -2
		}
	}
	// Merges: count reachable candidates the expensive way.
	for _, n := range rev {
		if ws.w[n] != -2 {
			continue
		}
		ws.w[n] = ws.distance(n)
		if !all && ws.halfway(n) {
			return n, true
		}
		counted++
	}
	// Single strands: one more than the parent (tree-same: the same).
	for counted < ws.nr {
		for _, n := range rev {
			if ws.w[n] >= 0 {
				continue
			}
			q := -1
			for _, p := range ws.interesting(n) {
				if ws.w[p] >= 0 {
					q = p
					break
				}
			}
			if q < 0 {
				continue
			}
			if ws.g.same[n] {
				ws.w[n] = ws.w[q]
			} else {
				ws.w[n] = ws.w[q] + 1
				counted++
			}
			if !all && ws.halfway(n) {
				return n, true
			}
		}
	}
	return 0, false
}

// halfway is git's approx_halfway.
func (ws *weights) halfway(n int) bool {
	if ws.g.same[n] {
		return false
	}
	diff := 2*ws.w[n] - ws.nr
	if diff >= -1 && diff <= 1 {
		return true
	}
	if diff < 0 {
		diff = -diff
	}
	return diff < ws.nr/1024
}

func (ws *weights) dist(n int) int { return min(ws.w[n], ws.nr-ws.w[n]) }

// best is git's best_bisection: the first candidate with the greatest
// distance (the list's first commit if none is greater than -1).
func (ws *weights) best(rev []int) int {
	best, bestDist := rev[0], -1
	for _, n := range rev {
		if !ws.g.same[n] {
			if d := ws.dist(n); d > bestDist {
				best, bestDist = n, d
			}
		}
	}
	return best
}

// sorted is git's best_bisection_sorted: every candidate by distance,
// ties by hash.
func (ws *weights) sorted(rev []int) []int {
	var counts []int
	for _, n := range rev {
		if !ws.g.same[n] {
			counts = append(counts, n)
		}
	}
	sort.SliceStable(counts, func(i, j int) bool {
		a, b := counts[i], counts[j]
		if da, db := ws.dist(a), ws.dist(b); da != db {
			return da > db
		}
		return ws.g.ids[a] < ws.g.ids[b]
	})
	return counts
}

// distance counts the candidates reachable from n, n included.
func (ws *weights) distance(n int) int {
	if ws.seen == nil {
		ws.seen = make([]uint32, ws.g.Len())
	}
	ws.stamp++
	stack := append(ws.stack[:0], n)
	count := 0
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !ws.in[x] || ws.seen[x] == ws.stamp {
			continue
		}
		ws.seen[x] = ws.stamp
		if !ws.g.same[x] {
			count++
		}
		stack = append(stack, ws.g.parents[x]...)
	}
	ws.stack = stack
	return count
}

// skipAway is git's pseudo-random step away from a skipped best commit, so
// that the same skips give the same sequence as git.
func skipAway(list []int, bad int) []int {
	count := int32(len(list))
	prn := getPRN(count)
	index := (count * prn / prnModulo) * sqrti(prn) / sqrti(prnModulo)
	prev := -1
	for i := range list {
		if int32(i) == index {
			if list[i] != bad {
				return list[i:]
			}
			if prev >= 0 {
				return list[prev:]
			}
			return list
		}
		prev = i
	}
	return list
}

const prnModulo = 32768

// getPRN is git's get_prn: a "man 3 rand" step in unsigned arithmetic.
func getPRN(count int32) int32 {
	c := uint32(count)*1103515245 + 12345
	return int32((c / 65536) % prnModulo)
}

// sqrti is git's integer square root, in single precision as git computes it.
func sqrti(val int32) int32 {
	if val == 0 {
		return 0
	}
	x := float32(val)
	for {
		y := (x + float32(val)/x) / 2
		d := y - x
		if y <= x {
			d = x - y
		}
		x = y
		if d < 0.5 {
			break
		}
	}
	return int32(x)
}
