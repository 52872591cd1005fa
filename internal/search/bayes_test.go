package search

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// linear makes a chain c1..cn (cn the bad tip, newest first as git lists
// it) whose oldest commit's parent is "c0", the good endpoint outside it.
func linear(n int) []Commit {
	var cs []Commit
	for i := n; i >= 1; i-- {
		cs = append(cs, Commit{ID: fmt.Sprintf("c%d", i), Parents: []string{fmt.Sprintf("c%d", i-1)}, Time: int64(i)})
	}
	return cs
}

func TestBayesPosteriorHandComputed(t *testing.T) {
	approx := cmpopts.EquateApprox(0, 1e-9)
	cases := []struct {
		name string
		f    float64
		obs  []Observation
		want []Candidate // sorted by P, then by position (stable)
	}{
		{"prior is uniform over c0..c3", 0, nil,
			[]Candidate{{"c0", .25}, {"c1", .25}, {"c2", .25}, {"c3", .25}}},
		// A fail at c2 rules out c3 (f=0); each other: B(2,1)/B(1,1) = 1/2.
		{"one fail", 0, []Observation{{Commit: "c2", Verdict: outcome.Bad}},
			[]Candidate{{"c0", 1. / 3}, {"c1", 1. / 3}, {"c2", 1. / 3}}},
		// H3: c2 good, one fail on c3: 1/2. H0..H2: one fail, one pass
		// on bad commits: B(2,2)/B(1,1) = 1/6.
		{"pass then fail", 0, []Observation{{Commit: "c2", Verdict: outcome.Good}, {Commit: "c3", Verdict: outcome.Bad}},
			[]Candidate{{"c3", .5}, {"c0", 1. / 6}, {"c1", 1. / 6}, {"c2", 1. / 6}}},
		// As above, the pass on c2 weighs 0.9 under H3 with f = 0.1.
		{"pass then fail, false alarms", 0.1, []Observation{{Commit: "c2", Verdict: outcome.Good}, {Commit: "c3", Verdict: outcome.Bad}},
			[]Candidate{{"c3", .45 / .95}, {"c0", 1. / 6 / .95}, {"c1", 1. / 6 / .95}, {"c2", 1. / 6 / .95}}},
		// Run counts: 2 fails and 1 pass on c3, 3 passes on c1. H2, H3:
		// (1-f)^3·B(3,2) = 1/12; H0, H1: B(3,5) = 1/105.
		{"run counts", 0, []Observation{{Commit: "c1", Verdict: outcome.Good, GoodRuns: 3}, {Commit: "c3", Verdict: outcome.Bad, GoodRuns: 1, BadRuns: 2}},
			[]Candidate{{"c2", (1. / 12) / (2./12 + 2./105)}, {"c3", (1. / 12) / (2./12 + 2./105)},
				{"c0", (1. / 105) / (2./12 + 2./105)}, {"c1", (1. / 105) / (2./12 + 2./105)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := NewGraph(linear(3), "c3", false)
			if err != nil {
				t.Fatal(err)
			}
			b := NewBayes(g, false, BayesOptions{FalseAlarm: c.f})
			b.a0, b.b0 = 1, 1 // uniform, for round numbers
			d, err := b.Decide(c.obs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, d.Posterior, approx); diff != "" {
				t.Errorf("posterior (-want +got):\n%s", diff)
			}
			if math.Abs(d.Confidence-c.want[0].P) > 1e-9 {
				t.Errorf("confidence %v, want %v", d.Confidence, c.want[0].P)
			}
		})
	}
}

func TestBayesChoosesMostInformativeTest(t *testing.T) {
	// Uniform priors (culprit c0..c3, and p), one run costs 1, a step 0.1
	// on top.
	// Expected information of one run at c1: h(.75) - .5·h(.5) = .311 bits,
	// at c0 .294, at c2 .204, at c3 0; two runs at c1 give .459 bits for
	// 2.1 s, less per second than one. So: c1, one run.
	g, _ := NewGraph(linear(3), "c3", false)
	uniform := func(b *Bayes) *Bayes { b.a0, b.b0 = 1, 1; return b }
	d, err := uniform(NewBayes(g, false, BayesOptions{})).Decide(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Next != "c1" || d.Runs != 1 || d.Done {
		t.Errorf("next %q ×%d (done %v), want c1 ×1", d.Next, d.Runs, d.Done)
	}
	// With a build costing 100 s, several runs per build pay off.
	d, _ = uniform(NewBayes(g, false, BayesOptions{Costs: Costs{Build: 100, Step: 5, Run: 1}})).Decide(nil)
	if d.Runs < 4 {
		t.Errorf("with costly builds: %d runs per step, want several", d.Runs)
	}
	// A commit already built is cheaper: after a pass at c1 with costly
	// builds, coming back to c1 must beat an equally informative new one
	// at least some of the time; here it is the only way to tell H1 from
	// H2..H3 without a build.
	obs := []Observation{{Commit: "c2", Verdict: outcome.Good}}
	d, _ = uniform(NewBayes(g, false, BayesOptions{Costs: Costs{Build: 1000, Step: 1, Run: 1}})).Decide(obs)
	if d.Next != "c2" {
		t.Errorf("with very costly builds, next %q, want the built c2", d.Next)
	}
}

func TestBayesEndpointIsAnObservation(t *testing.T) {
	g, _ := NewGraph(linear(5), "c5", false)
	// The good endpoint fails: with no false alarms only "older than the
	// range" explains it.
	d, err := NewBayes(g, false, BayesOptions{}).Decide([]Observation{{Commit: "c0", Verdict: outcome.Bad}})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Done || d.Older != "c0" || d.Culprit != "" {
		t.Errorf("got %+v, want done, older than c0", d)
	}
	// With false alarms possible it is evidence, not proof.
	d, _ = NewBayes(g, false, BayesOptions{FalseAlarm: 0.05}).Decide([]Observation{{Commit: "c0", Verdict: outcome.Bad}})
	if d.Done {
		t.Errorf("one fail at the good endpoint with f=0.05 ended the search: %+v", d)
	}
}

func TestBayesSkippedCommitsAreAmbiguous(t *testing.T) {
	g, _ := NewGraph(linear(6), "c6", false)
	obs := []Observation{{Commit: "c3", Verdict: outcome.Skip}, {Commit: "c4", Verdict: outcome.Skip}}
	for range 40 {
		obs = append(obs, Observation{Commit: "c2", Verdict: outcome.Good}, Observation{Commit: "c5", Verdict: outcome.Bad})
	}
	d, err := NewBayes(g, false, BayesOptions{}).Decide(obs)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Done || d.Culprit != "" {
		t.Fatalf("got %+v, want done and ambiguous", d)
	}
	if diff := cmp.Diff([]string{"c3", "c4", "c5"}, d.Ambiguous); diff != "" {
		t.Errorf("ambiguous (-want +got):\n%s", diff)
	}
}

// oracle says whether each commit of a DAG made by randomDAG is bad for a
// given culprit (index into commits).
func oracle(commits []Commit, culprit int) map[string]bool {
	bad := map[string]bool{commits[culprit].ID: true}
	for i := culprit; i >= 0; i-- {
		for _, p := range commits[i].Parents {
			if bad[p] {
				bad[commits[i].ID] = true
			}
		}
	}
	return bad
}

// simulate runs a strategy against a test that fails with probability p on
// bad commits and f on good ones; it returns the decision and runs used.
func simulate(t *testing.T, s Strategy, bad map[string]bool, p, f float64, rng *rand.Rand, maxSteps int) (Decision, int) {
	t.Helper()
	var obs []Observation
	runs := 0
	for range maxSteps {
		d, err := s.Decide(obs)
		if err != nil {
			t.Fatal(err)
		}
		if d.Done {
			return d, runs
		}
		o := Observation{Commit: d.Next}
		for range max(d.Runs, 1) {
			q := f
			if bad[d.Next] {
				q = p
			}
			if rng.Float64() < q {
				o.BadRuns++
			} else {
				o.GoodRuns++
			}
			runs++
		}
		o.Verdict = outcome.Good
		if o.BadRuns > 0 {
			o.Verdict = outcome.Bad
		}
		obs = append(obs, o)
	}
	t.Fatalf("no answer after %d steps", maxSteps)
	return Decision{}, runs
}

func TestBayesPosteriorSumsToOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 100 {
		n := 2 + rng.IntN(200)
		commits := randomDAG(rng, n)
		g, err := NewGraph(commits[:n-1], commits[0].ID, trial%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		b := NewBayes(g, trial%2 == 0, BayesOptions{FalseAlarm: []float64{0, 0.01, 0.2}[trial%3]})
		var obs []Observation
		for range rng.IntN(30) {
			c := commits[rng.IntN(n)].ID
			obs = append(obs, Observation{Commit: c, Verdict: outcome.Verdict(rng.IntN(3))})
		}
		lv := b.levelFor(-1)
		runs := map[string]counts{}
		for _, o := range obs {
			gd, bd := o.runs()
			c := runs[o.Commit]
			c.good += gd
			c.bad += bd
			runs[o.Commit] = c
		}
		cnt, _ := lv.observe(runs, nil)
		post := b.infer(lv, cnt)
		sum := 0.0
		for _, v := range post.pi {
			if v < 0 || math.IsNaN(v) {
				t.Fatalf("trial %d: posterior has %v", trial, v)
			}
			sum += v
		}
		// "Everything is bad" (position 0) is never ruled out, so the
		// posterior always normalizes.
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("trial %d: posterior sums to %v", trial, sum)
		}
	}
}

// branchyDAG makes n commits, newest first: a mainline where one commit in
// four merges a side branch of 1-5 commits forked from a recent mainline
// commit. The last commit is the root.
func branchyDAG(rng *rand.Rand, n int) []Commit {
	var made []Commit
	add := func(parents ...string) string {
		c := Commit{ID: fmt.Sprintf("%040x", len(made)+1), Parents: parents, Time: int64(len(made) + 1)}
		made = append(made, c)
		return c.ID
	}
	var mainline []string
	for len(made) < n {
		var parents []string
		if len(mainline) > 0 {
			parents = append(parents, mainline[len(mainline)-1])
		}
		if len(mainline) > 2 && rng.IntN(4) == 0 && n-len(made) >= 2 {
			side := mainline[len(mainline)-1-rng.IntN(min(6, len(mainline)))]
			for range min(1+rng.IntN(5), n-len(made)-1) {
				side = add(side)
			}
			parents = append(parents, side)
		}
		mainline = append(mainline, add(parents...))
	}
	out := make([]Commit, n)
	for i, c := range made {
		out[n-1-i] = c
	}
	return out
}

func TestBayesAgreesWithClassicOnDeterministicTests(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 200 {
		n := 3 + rng.IntN(150)
		commits := randomDAG(rng, n)
		if trial%2 == 0 {
			commits = branchyDAG(rng, n)
		}
		firstParent := trial%4 == 3
		g, err := NewGraph(commits[:n-1], commits[0].ID, firstParent)
		if err != nil {
			t.Fatal(err)
		}
		culprit := rng.IntN(n - 1)
		bad := oracle(commits, culprit)
		c, _ := simulate(t, NewClassic(g, firstParent), bad, 1, 0, rng, 100)
		b, runs := simulate(t, NewBayes(g, firstParent, BayesOptions{}), bad, 1, 0, rng, 1000)
		if b.Culprit != c.Culprit || b.Exhausted != "" {
			t.Errorf("trial %d (n=%d, first-parent %v): bayes %q (%+v), classic %q", trial, n, firstParent, b.Culprit, b, c.Culprit)
		}
		if b.Confidence < 0.99 {
			t.Errorf("trial %d: confidence %v", trial, b.Confidence)
		}
		if runs > 40*int(math.Log2(float64(n))+1) {
			t.Errorf("trial %d: %d runs for %d commits", trial, runs, n)
		}
	}
}

func TestBayesFlakyAccuracy(t *testing.T) {
	// p = 0.3 on a 500-commit line: the stated 0.99 must hold up.
	rng := rand.New(rand.NewPCG(7, 8))
	const trials = 150
	g, _ := NewGraph(linear(500), "c500", false)
	wrong := 0
	for range trials {
		culprit := 1 + rng.IntN(500)
		bad := map[string]bool{}
		for i := culprit; i <= 500; i++ {
			bad[fmt.Sprintf("c%d", i)] = true
		}
		d, _ := simulate(t, NewBayes(g, false, BayesOptions{}), bad, 0.3, 0, rng, 5000)
		if d.Culprit != fmt.Sprintf("c%d", culprit) {
			wrong++
		}
	}
	// 1% expected wrong; 5 of 150 is well outside that.
	if wrong > 5 {
		t.Errorf("%d of %d trials wrong at confidence 0.99", wrong, trials)
	}
}

func TestBayesRunBudget(t *testing.T) {
	g, _ := NewGraph(linear(100), "c100", false)
	bad := map[string]bool{}
	for i := 40; i <= 100; i++ {
		bad[fmt.Sprintf("c%d", i)] = true
	}
	rng := rand.New(rand.NewPCG(9, 10))
	d, runs := simulate(t, NewBayes(g, false, BayesOptions{MaxRuns: 10}), bad, 0.2, 0, rng, 100)
	if !strings.Contains(d.Exhausted, "budget") || runs > 10 {
		t.Errorf("exhausted %q after %d runs, want stopped at 10 by the budget", d.Exhausted, runs)
	}
	if len(d.Posterior) == 0 || d.Confidence <= 0 {
		t.Errorf("no candidates reported: %+v", d)
	}
}

// A commit whose runs the answer explains only with a tiny probability is
// a misfit: all passes above the culprit, all fails below it. Flaky runs
// that fit (a pass or two above, at the rate seen elsewhere) are not.
func TestBayesMisfit(t *testing.T) {
	obs := func(spec map[string][2]int) []Observation { // commit: {fails, passes}
		var out []Observation
		for c, n := range spec {
			v := outcome.Good
			if n[0] > 0 {
				v = outcome.Bad
			}
			out = append(out, Observation{Commit: c, Verdict: v, BadRuns: n[0], GoodRuns: n[1]})
		}
		return out
	}
	cases := []struct {
		name    string
		runs    map[string][2]int
		culprit string
		want    *Misfit // Commit and Above only
	}{
		{"monotonic, flaky", map[string][2]int{"c9": {0, 20}, "c10": {6, 2}, "c20": {2, 2}, "c30": {4, 1}, "c40": {3, 1}}, "c10", nil},
		{"all passes above the culprit", map[string][2]int{"c9": {0, 20}, "c10": {12, 0}, "c25": {0, 8}, "c30": {8, 0}, "c40": {8, 0}}, "c10",
			&Misfit{Commit: "c25", Above: true}},
		{"all fails below the culprit", map[string][2]int{"c5": {6, 0}, "c29": {0, 12}, "c9": {0, 12}, "c30": {8, 0}, "c40": {8, 0}}, "c30",
			&Misfit{Commit: "c5"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := NewGraph(linear(40), "c40", false)
			if err != nil {
				t.Fatal(err)
			}
			d, err := NewBayes(g, false, BayesOptions{LearnFalseAlarm: true, Confidence: 0.99}).Decide(obs(c.runs))
			if err != nil {
				t.Fatal(err)
			}
			if !d.Done || d.Culprit != c.culprit {
				t.Fatalf("done %v culprit %q (posterior %v), want %s", d.Done, d.Culprit, d.Posterior, c.culprit)
			}
			var got *Misfit
			if d.Misfit != nil {
				got = &Misfit{Commit: d.Misfit.Commit, Above: d.Misfit.Above}
				t.Logf("misfit %+v", *d.Misfit)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("misfit (-want +got):\n%s", diff)
			}
		})
	}
}
