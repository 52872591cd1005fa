// Command flaky is the flaky-bug simulation benchmark: it drives firstbad's
// real search code (internal/search) over synthetic histories with a test
// that fails with probability p on bad commits and f on good ones, and
// prints accuracy, runs and calibration for the Bayesian strategy beside
// two baselines run on the same trials: classic with one run per step
// (plain git bisect) and classic with n runs per step (bad if any fails),
// n = ceil(ln(δ/S)/ln(1-p)), S = ceil(log2 N), δ = 1 - target accuracy.
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/search"
)

func main() {
	sizes := flag.String("n", "100,1000,10000", "history sizes")
	ps := flag.String("p", "0.9,0.5,0.3,0.1", "failure probabilities on bad commits")
	fs := flag.String("f", "0,0.01", "false-alarm rates on good commits")
	shapes := flag.String("shape", "linear,merges", "history shapes")
	trials := flag.Int("trials", 1000, "trials per setting (at N >= 10,000: trials/5)")
	target := flag.Float64("confidence", 0.99, "confidence asked of the Bayesian strategy, and the baselines' target accuracy")
	seed := flag.Uint64("seed", 1, "random seed")
	models := flag.String("model", "auto", "false-alarm rates the Bayesian strategy assumes: auto (learned, the default), exact (the true f), zero (0); comma-separated")
	flag.Parse()

	fmt.Printf("flaky-bug simulation: target %.2f, seed %d, %d CPUs\n", *target, *seed, runtime.NumCPU())
	fmt.Println("runs: total test runs per bisect (mean / p95); builds: distinct commits tested (mean); calib: share correct among answers stated at >= target")
	fmt.Println("classic×1+checks: the one-run answers firstbad's checks (culprit and parent retested, revert on the tip) let stand as found, and the wrong ones among all trials")
	fmt.Printf("%-6s %-7s %-4s %-5s | %-34s | %-24s | %-22s | %-28s | %s\n", "N", "shape", "p", "f", "bayes: acc runs p95 builds calib", "classic×1: acc runs", "+checks: found wrong", "classic×n: n acc runs p95", "misfit")
	for _, shape := range split(*shapes) {
		for _, n := range list[int](*sizes) {
			hist := history(shape, n, rand.New(rand.NewPCG(*seed, uint64(n))))
			g, err := search.NewGraph(hist.commits, hist.commits[0].ID, false)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			t := *trials
			if n >= 10000 {
				t = max(*trials/5, 1)
			}
			for _, p := range list[float64](*ps) {
				for _, f := range list[float64](*fs) {
					for _, model := range split(*models) {
						if model == "zero" && f == 0 {
							continue // the same as exact
						}
						start := time.Now()
						r := setting(g, hist, p, f, model, *target, t, *seed)
						label := fmt.Sprintf("%g", f) + map[string]string{"auto": "~", "zero": "*"}[model]
						found, wrong := r.checked.found()
						fmt.Printf("%-6d %-7s %-4g %-5s | %6.1f%% %6.1f %5d %5.1f %6.1f%% | %6.1f%% %6.1f          | %6.1f%% %6.1f%%        | %3d %6.1f%% %7.1f %6d | %5.1f%%  (%d trials, %.0fs)\n",
							n, shape, p, label,
							100*r.bayes.acc(), r.bayes.mean(), r.bayes.p95(), r.bayes.builds(), 100*r.calib(),
							100*r.one.acc(), r.one.mean(), 100*found, 100*wrong,
							r.fixedN, 100*r.fixed.acc(), r.fixed.mean(), r.fixed.p95(), 100*r.bayes.misfits(), t, time.Since(start).Seconds())
					}
				}
			}
		}
	}
	fmt.Println("f~: the Bayesian strategy learns the false-alarm rate (--false-alarm-rate auto, the default); f: it was told the true rate; f*: it was told 0")
}

// hist is a synthetic history: commits newest first (as git lists them);
// "c0", the good endpoint, is outside it. With merges, a quarter of the
// mainline commits merge a side branch.
type hist struct {
	parent   map[string]string // first parents
	commits  []search.Commit
	children map[string][]string
}

func history(shape string, n int, rng *rand.Rand) hist {
	h := hist{children: map[string][]string{}, parent: map[string]string{}}
	var made []search.Commit // oldest first
	add := func(parents ...string) string {
		c := search.Commit{ID: fmt.Sprintf("c%d", len(made)+1), Parents: parents, Time: int64(len(made) + 1)}
		made = append(made, c)
		return c.ID
	}
	var mainline []string
	tip := "c0"
	for len(made) < n {
		if shape == "merges" && len(mainline) > 2 && rng.IntN(4) == 0 && n-len(made) >= 3 {
			// A side branch of 1-8 commits forked from a recent mainline
			// commit, merged back by a merge commit on the mainline.
			side := mainline[len(mainline)-1-rng.IntN(min(10, len(mainline)))]
			for range min(1+rng.IntN(8), n-len(made)-1) {
				side = add(side)
			}
			tip = add(tip, side)
		} else {
			tip = add(tip)
		}
		mainline = append(mainline, tip)
	}
	for i := len(made) - 1; i >= 0; i-- {
		h.commits = append(h.commits, made[i])
	}
	for _, c := range h.commits {
		h.parent[c.ID] = c.Parents[0]
		for _, p := range c.Parents {
			h.children[p] = append(h.children[p], c.ID)
		}
	}
	return h
}

// badSet is every commit that has the culprit as an ancestor (or is it).
func (h hist) badSet(culprit string) map[string]bool {
	bad := map[string]bool{culprit: true}
	stack := []string{culprit}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, ch := range h.children[c] {
			if !bad[ch] {
				bad[ch] = true
				stack = append(stack, ch)
			}
		}
	}
	return bad
}

type trial struct {
	correct    bool
	runs       int
	builds     int
	confidence float64
	answer     string
	misfit     bool // the answer came with a misfit (non-monotonic?)
}

type stats []trial

// share is the share of trials for which f holds.
func (s stats) share(f func(trial) bool) float64 {
	c := 0
	for _, o := range s {
		if f(o) {
			c++
		}
	}
	return float64(c) / float64(len(s))
}

func (s stats) acc() float64 { return s.share(func(o trial) bool { return o.correct }) }

// misfits is the share of trials whose answer came with a misfit: on
// these monotonic histories, each one a run that would end non-monotonic.
func (s stats) misfits() float64 { return s.share(func(o trial) bool { return o.misfit }) }

// found is the share of trials that ended with an answer, and of trials
// whose answer was wrong.
func (s stats) found() (found, wrong float64) {
	for _, o := range s {
		if o.answer != "" {
			found++
			if !o.correct {
				wrong++
			}
		}
	}
	return found / float64(len(s)), wrong / float64(len(s))
}

func (s stats) mean() float64 {
	t := 0
	for _, o := range s {
		t += o.runs
	}
	return float64(t) / float64(len(s))
}

func (s stats) builds() float64 {
	t := 0
	for _, o := range s {
		t += o.builds
	}
	return float64(t) / float64(len(s))
}

func (s stats) p95() int {
	r := make([]int, len(s))
	for i, o := range s {
		r[i] = o.runs
	}
	sort.Ints(r)
	return r[min(len(r)-1, int(math.Ceil(0.95*float64(len(r))))-1)]
}

type result struct {
	bayes, one, fixed stats
	// checked: the one-run classic answers that firstbad's checks (the
	// culprit retested, its parent, the revert on the tip) let stand as
	// found.
	checked stats
	fixedN  int
	target  float64
}

// calib is the share of correct answers among those stated at >= target.
func (r result) calib() float64 {
	n, c := 0, 0
	for _, o := range r.bayes {
		if o.confidence >= r.target {
			n++
			if o.correct {
				c++
			}
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return float64(c) / float64(n)
}

func setting(g *search.Graph, h hist, p, f float64, model string, target float64, trials int, seed uint64) result {
	opt := search.BayesOptions{Confidence: target, MaxRuns: 20000}
	switch model {
	case "auto":
		opt.LearnFalseAlarm = true
	case "exact":
		opt.FalseAlarm = f
	}
	n := g.Len()
	steps := math.Ceil(math.Log2(float64(n)))
	fixedN := 1
	if p < 1 {
		fixedN = int(math.Ceil(math.Log((1-target)/steps) / math.Log(1-p)))
	}
	r := result{bayes: make(stats, trials), one: make(stats, trials), fixed: make(stats, trials), checked: make(stats, trials), fixedN: fixedN, target: target}
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				rng := rand.New(rand.NewPCG(seed, uint64(t)*7919+uint64(n)))
				culprit := h.commits[rng.IntN(n)].ID
				bad := h.badSet(culprit)
				test := func(c string) bool { // true: the run failed
					q := f
					if bad[c] {
						q = p
					}
					return rng.Float64() < q
				}
				b := search.NewBayes(g, false, opt)
				r.bayes[t] = run(b, test, 0, culprit)
				r.one[t] = run(search.NewClassic(g, false), test, 1, culprit)
				r.checked[t] = checks(h, r.one[t], test, func(answer string) bool {
					q := p // the true culprit's change is still in the tip
					if answer == culprit {
						q = f
					}
					return rng.Float64() < q
				})
				r.fixed[t] = run(search.NewClassic(g, false), test, fixedN, culprit)
			}
		}()
	}
	for t := range trials {
		work <- t
	}
	close(work)
	wg.Wait()
	return r
}

// checks is what firstbad's checks after a classic search make of its
// answer: found when the culprit fails again, its first parent passes and
// the tip with the answer reverted passes (revertFails says how that run
// went); else the run ends suspect (a trial with no answer).
func checks(h hist, t trial, failed func(string) bool, revertFails func(string) bool) trial {
	a := t.answer
	if a == "" || !failed(a) || failed(h.parent[a]) || revertFails(a) {
		return trial{runs: t.runs + 3}
	}
	t.runs += 3
	return t
}

// run drives one strategy to its answer. runs > 0 fixes the runs per step
// (the step is bad if any run fails); 0 lets the strategy decide.
func run(s search.Strategy, failed func(string) bool, runs int, culprit string) trial {
	var obs []search.Observation
	out := trial{}
	built := map[string]bool{}
	for {
		d, err := s.Decide(obs)
		if err != nil {
			// Classic gives up on contradictions (a commit both good and
			// bad); that is a wrong answer.
			return out
		}
		if d.Done {
			out.correct = d.Culprit == culprit
			out.confidence, out.answer, out.misfit = d.Confidence, d.Culprit, d.Misfit != nil
			return out
		}
		k := runs
		if k == 0 {
			k = max(d.Runs, 1)
		}
		o := search.Observation{Commit: d.Next}
		for range k {
			if failed(d.Next) {
				o.BadRuns++
			} else {
				o.GoodRuns++
			}
		}
		out.runs += k
		if !built[d.Next] {
			built[d.Next] = true
			out.builds++
		}
		o.Verdict = outcome.Good
		if o.BadRuns > 0 {
			o.Verdict = outcome.Bad
		}
		obs = append(obs, o)
	}
}

func split(s string) []string { return strings.Split(s, ",") }

// list parses a comma-separated flag value.
func list[T int | float64](s string) []T {
	var out []T
	for _, x := range split(s) {
		var v T
		fmt.Sscan(x, &v)
		out = append(out, v)
	}
	return out
}
