package search

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/firstbad/firstbad/internal/outcome"
)

// randomDAG makes n commits, newest first in the slice as git lists them,
// with merges; commit 0 is the tip.
func randomDAG(rng *rand.Rand, n int) []Commit {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%040x", i+1)
	}
	commits := make([]Commit, n)
	for i := range commits {
		c := Commit{ID: ids[i], Time: int64(n - i)}
		if i+1 < n {
			c.Parents = append(c.Parents, ids[i+1])
			if rng.IntN(5) == 0 && i+3 < n {
				c.Parents = append(c.Parents, ids[i+2+rng.IntN(min(10, n-i-2))])
			}
		}
		commits[i] = c
	}
	return commits
}

func TestClassicFindsCulpritOnRandomGraphs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := 2 + rng.IntN(300)
		commits := randomDAG(rng, n)
		// The last commit is the good one; it is outside the range.
		g, err := NewGraph(commits[:n-1], commits[0].ID, false)
		if err != nil {
			t.Fatal(err)
		}
		culprit := rng.IntN(n - 1)
		// bad = culprit is an ancestor of (or is) the commit.
		bad := make([]bool, n)
		bad[culprit] = true
		for i := culprit; i >= 0; i-- {
			for _, p := range commits[i].Parents {
				var j int
				fmt.Sscanf(p, "%x", &j)
				if bad[j-1] {
					bad[i] = true
				}
			}
		}
		var obs []Observation
		steps := 0
		for {
			d, err := NewClassic(g, false).Decide(obs)
			if err != nil {
				t.Fatal(err)
			}
			if d.Done {
				if d.Culprit != commits[culprit].ID {
					t.Fatalf("trial %d: culprit %s, want %s", trial, d.Culprit, commits[culprit].ID)
				}
				break
			}
			steps++
			var i int
			fmt.Sscanf(d.Next, "%x", &i)
			v := outcome.Good
			if bad[i-1] {
				v = outcome.Bad
			}
			obs = append(obs, Observation{Commit: d.Next, Verdict: v})
		}
		// Merges can cost a step or two over log2 (as with git).
		if limit := int(math.Ceil(math.Log2(float64(n)))) + 3; steps > limit {
			t.Errorf("trial %d: %d steps for %d commits (limit %d)", trial, steps, n, limit)
		}
	}
}

func TestSkipAwayMatchesGitArithmetic(t *testing.T) {
	// Values computed with git's C code (get_prn, sqrti).
	cases := []struct{ in, prn, sqrt int32 }{{1, 16838, 129}, {2, 908, 30}, {10, 4543, 67}}
	for _, c := range cases {
		if got := getPRN(c.in); got != c.prn {
			t.Errorf("getPRN(%d) = %d, want %d", c.in, got, c.prn)
		}
		if got := sqrti(c.prn); got != c.sqrt {
			t.Errorf("sqrti(%d) = %d, want %d", c.prn, got, c.sqrt)
		}
	}
	if sqrti(prnModulo) != 181 {
		t.Errorf("sqrti(32768) = %d, want 181", sqrti(prnModulo))
	}
}

// Cheapest trades the best split for one within a tenth of it that costs
// less, never for a worse split, and keeps the choice on a tie.
func TestCheapest(t *testing.T) {
	ranked := []Ranked{{"a", 50}, {"b", 48}, {"c", 46}, {"d", 44}, {"e", 30}}
	for _, c := range []struct {
		name  string
		costs map[string]int
		want  string
	}{
		{"the best is cheapest", map[string]int{"a": 1, "b": 5, "c": 5, "d": 5, "e": 0}, "a"},
		{"a near split is cheaper", map[string]int{"a": 900, "b": 900, "c": 3, "d": 10, "e": 0}, "c"},
		{"a far split is never taken", map[string]int{"a": 900, "b": 900, "c": 900, "d": 900, "e": 0}, "a"},
		{"ties keep the choice", map[string]int{"a": 7, "b": 7, "c": 7, "d": 7, "e": 7}, "a"},
	} {
		got, cost := Cheapest(ranked, "a", func(id string) int { return c.costs[id] })
		if got != c.want || cost != c.costs[c.want] {
			t.Errorf("%s: %s (cost %d), want %s", c.name, got, cost, c.want)
		}
	}
	// The choice need not be ranked first (git's halfway shortcut).
	if got, _ := Cheapest(ranked, "b", func(id string) int { return map[string]int{"a": 1, "b": 2}[id] + 10*map[string]int{"c": 1, "d": 1}[id] }); got != "a" {
		t.Errorf("from b: %s, want the cheaper a", got)
	}
}
