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
