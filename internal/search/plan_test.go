package search

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Plan's expectation is the least any order of tests gives (checked
// against a plain recursion over every choice on small lines), never more
// than starting at the midpoint; where builds cost the same it is git's
// bisection, and a costly kernel boundary is tested behind the cheap ones.
func TestPlan(t *testing.T) {
	flat := func(i, j int) float64 {
		if i == j {
			return 0
		}
		return 10
	}
	// Kernels 0..16, the build dir at 16: kernel 10 changed a header every
	// object includes (crossing it costs 500 s), the rest cost 10 s.
	heavy := func(i, j int) float64 {
		if min(i, j) < 10 && max(i, j) >= 10 {
			return 500
		}
		return flat(i, j)
	}
	for _, c := range []struct {
		name    string
		m, from int
		cost    func(i, j int) float64
		want    []int // any of these
		cheaper bool  // the plan saves against the midpoint first
	}{
		{"same cost: the midpoint", 16, 16, flat, []int{8}, false},
		{"same cost, odd: either middle", 15, 15, flat, []int{7, 8}, false},
		{"a costly boundary: the cheap side first", 16, 16, heavy, []int{10, 11, 12, 13, 14, 15}, true},
	} {
		next, expect, mid := Plan(c.m, c.from, c.cost, 5)
		ok := false
		for _, w := range c.want {
			ok = ok || next == w
		}
		if !ok {
			t.Errorf("%s: next %d, want one of %v", c.name, next, c.want)
		}
		if expect > mid+1e-9 || (c.cheaper && expect > mid-1) || (!c.cheaper && math.Abs(expect-mid) > 1e-9) {
			t.Errorf("%s: expected %.1f s, from the midpoint %.1f s", c.name, expect, mid)
		}
	}

	// Small random lines: the least expectation over every order of tests.
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		m := 2 + rng.IntN(7)
		from := rng.IntN(m + 1)
		w := make([]float64, m+1) // what crossing into each kernel costs
		for i := range w {
			w[i] = float64(rng.IntN(4)) * float64(rng.IntN(300))
		}
		cost := func(i, j int) float64 {
			s := 1.0
			for k := min(i, j) + 1; k <= max(i, j); k++ {
				s += w[k]
			}
			return s
		}
		var brute func(l, r, at int) float64
		brute = func(l, r, at int) float64 {
			if r-l <= 1 {
				return 0
			}
			least := math.Inf(1)
			for x := l + 1; x < r; x++ {
				v := cost(at, x) + 3 + (float64(x-l)*brute(l, x, x)+float64(r-x)*brute(x, r, x))/float64(r-l)
				least = math.Min(least, v)
			}
			return least
		}
		next, expect, mid := Plan(m, from, cost, 3)
		if want := brute(0, m, from); math.Abs(expect-want) > 1e-6 || next < 1 || next >= m || expect > mid+1e-9 {
			t.Fatalf("trial %d (m %d, from %d, w %v): next %d, expected %.3f, want %.3f; midpoint %.3f", trial, m, from, w, next, expect, want, mid)
		}
	}
	if next, _, _ := Plan(1, 1, flat, 5); next != -1 {
		t.Errorf("a range with its culprit known: next %d, want none", next)
	}
}
