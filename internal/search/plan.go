package search

// MaxPlanKernels bounds Plan's range: its table grows with the cube of the
// kernels (256: ~5.6 million terms, well under a second).
const MaxPlanKernels = 256

// Plan chooses the next test of a search over a line of kernels 0..m, 0
// good and m bad, when each of 1..m is equally likely the first bad one
// and building costs: cost(i, j) is the seconds to build kernel j in a
// build dir that holds kernel i, step the seconds a test adds. from is the
// kernel the build dir holds (it may lie outside 0..m: cost is asked
// about it too). It returns the kernel to test (1..m-1) that makes the
// whole search's expected seconds least, that expectation, and the one of
// testing git's midpoint first (then planning the same way): what the
// plan saves. A build dir far from a kernel makes its build a whole one,
// so the plan tests near the builds it has while the odds allow — a
// split less even, a step more, minutes less.
//
// After a test, the build dir holds the kernel tested, one end of the
// range left: the table is over ranges and which end the dir holds.
func Plan(m, from int, cost func(i, j int) float64, step float64) (next int, expect, midExpect float64) {
	if m < 2 {
		return -1, 0, 0
	}
	// e[l][r][0] with the dir at l, [1] at r: the expected seconds to end a
	// search whose culprit is in l+1..r.
	e := make([][][2]float64, m+1)
	for l := range e {
		e[l] = make([][2]float64, m+1)
	}
	for n := 2; n <= m; n++ {
		for l := 0; l+n <= m; l++ {
			r := l + n
			for side, at := range [2]int{l, r} {
				_, e[l][r][side] = best(l, r, at, cost, step, e)
			}
		}
	}
	next, expect = best(0, m, from, cost, step, e)
	return next, expect, after(0, m, m/2, from, cost, step, e)
}

// best is the kernel to test in l+1..r-1 with the build dir at kernel at,
// and the expected seconds that leaves (e holds every smaller range).
func best(l, r, at int, cost func(i, j int) float64, step float64, e [][][2]float64) (int, float64) {
	next, least := -1, 0.0
	for x := l + 1; x < r; x++ {
		if v := after(l, r, x, at, cost, step, e); next < 0 || v < least {
			next, least = x, v
		}
	}
	return next, least
}

// after is the expected seconds of testing x next: its build and test,
// then the rest of the search on x's side, weighted by the odds of each.
func after(l, r, x, at int, cost func(i, j int) float64, step float64, e [][][2]float64) float64 {
	return cost(at, x) + step + (float64(x-l)*e[l][x][1]+float64(r-x)*e[x][r][0])/float64(r-l)
}
