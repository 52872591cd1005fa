package session

import (
	"math"
	"slices"
	"strconv"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/search"
)

// setStrategy checks and records the search strategy and its options.
func (p *Params) setStrategy(in Input) error {
	switch in.Strategy {
	case "":
		// Kernel runs search over kernels, unless the test may tell apart
		// commits that build the same kernel, or the range is limited to
		// paths (git's own path-limited search).
		p.Strategy = "classic"
		if p.Kernel != nil && !p.RetestSameKernel && len(p.Paths) == 0 {
			p.Strategy = "fast"
		}
		return p.noBayesOptions(in)
	case "classic":
		p.Strategy = "classic"
		return p.noBayesOptions(in)
	case "fast":
		p.Strategy = "fast"
		if p.Kernel == nil {
			return outcome.InputErr("--strategy fast searches over the kernels a range builds: it needs a kernel run (--guest-test or --host-test), not --exec")
		}
		if p.RetestSameKernel {
			return outcome.InputErr("--strategy fast tests one commit per kernel: a test that tells apart commits building the same kernel (--retest-same-kernel) needs --strategy classic")
		}
		return p.noBayesOptions(in)
	case "bayes":
	default:
		return outcome.InputErr("unknown --strategy %q: use fast (kernel runs: one test per distinct kernel), classic (git bisect's choices) or bayes (for flaky tests)", in.Strategy)
	}
	p.Strategy = "bayes"
	switch {
	case in.Repeat > 1:
		return outcome.InputErr("--repeat is for the classic strategy: the Bayesian strategy decides how many runs each step gets (bound the total with --max-runs)")
	case in.Confidence != 0 && (in.Confidence < 0.5 || in.Confidence >= 1):
		return outcome.InputErr("--confidence must be at least 0.5 and below 1 (e.g. 0.99)")
	case in.MaxRuns < 0:
		return outcome.InputErr("--max-runs must be 0 (automatic) or more")
	}
	p.Confidence, p.MaxRuns = in.Confidence, in.MaxRuns
	if err := p.setFalseAlarm(in.FalseAlarm); err != nil {
		return err
	}
	if p.Confidence == 0 {
		p.Confidence = 0.99
	}
	return nil
}

// noBayesOptions refuses the Bayesian strategy's options without it.
func (p *Params) noBayesOptions(in Input) error {
	if in.FalseAlarm != "" || in.Confidence != 0 || in.MaxRuns != 0 {
		return outcome.InputErr("--false-alarm-rate, --confidence and --max-runs belong to the Bayesian strategy: add --strategy bayes (or --flaky)")
	}
	return nil
}

// setFalseAlarm reads --false-alarm-rate: auto (learned) or a rate.
func (p *Params) setFalseAlarm(s string) error {
	if s == "" || s == "auto" {
		p.FalseAlarmAuto = true
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f >= 0.5 {
		return outcome.InputErr("--false-alarm-rate must be auto (learned from the runs, the default) or at least 0 and below 0.5 (the share of runs that fail on a good commit), not %q", s)
	}
	p.FalseAlarm = f
	return nil
}

// bayes reports whether the run uses the Bayesian strategy.
func (p Params) bayes() bool { return p.Strategy == "bayes" }

// fast reports whether the run searches over kernels (--strategy fast).
func (p Params) fast() bool { return p.Strategy == "fast" }

// cells reports whether a Bayesian run searches over kernels: a kernel run
// whose test sees only the kernel, over the whole range (cells).
func (p Params) cells() bool {
	return p.bayes() && p.Kernel != nil && !p.RetestSameKernel && len(p.Paths) == 0
}

// budget is the run budget of a Bayesian run over n candidates: the user's,
// or enough for a test that fails one time in ten.
func (p Params) budget(n int) int {
	if p.MaxRuns > 0 {
		return p.MaxRuns
	}
	return 40 * int(math.Ceil(math.Log2(float64(n+1))))
}

// strategy makes the run's search strategy over the range (a graph of
// nodes; files are what each commit changes, for fast).
func (p Params) strategy(g *search.Graph, nodes []search.Commit, files map[string][]string, steps []journal.Step) (search.Strategy, error) {
	switch {
	case p.fast():
		return newFast(nodes, files, p) // the steps teach it as they are replayed (learn)
	case !p.bayes():
		return search.NewClassic(g, p.FirstParent), nil
	}
	opt := search.BayesOptions{FalseAlarm: p.FalseAlarm, LearnFalseAlarm: p.FalseAlarmAuto, Confidence: p.Confidence, MaxRuns: p.budget(g.Len()), Costs: p.costs(steps)}
	if p.cells() {
		return newCells(nodes, files, p, opt) // taught by the steps as they are replayed (learn)
	}
	return search.NewBayes(g, p.FirstParent, opt), nil
}

// feeds says whether a step's verdict feeds the search: search steps,
// retests and marks by hand always; endpoint checks too under the
// Bayesian strategy, for which they are observations like any other.
func (p Params) feeds(st journal.Step) bool {
	if st.State != journal.StateDone {
		return false
	}
	switch st.Kind {
	case journal.KindSearch, journal.KindRetest, journal.KindMark:
		return true
	}
	return p.bayes() && st.Kind == journal.KindEndpoint
}

// fold adds a finished step to the search's observations. A mark by hand
// replaces all that was seen of its commit before it.
func (p Params) fold(obs []search.Observation, st journal.Step) []search.Observation {
	if st.Kind == journal.KindMark && st.State == journal.StateDone {
		obs = slices.DeleteFunc(slices.Clone(obs), func(o search.Observation) bool { return o.Commit == st.Commit })
	}
	if o, ok := observation(st); ok && p.feeds(st) {
		obs = append(obs, o)
	}
	return obs
}

// observation turns a finished step into search input, with its runs'
// counts (what the Bayesian strategy weighs).
func observation(st journal.Step) (search.Observation, bool) {
	v, err := outcome.ParseVerdict(st.Verdict)
	if err != nil {
		return search.Observation{}, false
	}
	o := search.Observation{Commit: st.Commit, Verdict: v}
	for _, a := range st.Attempts {
		switch a.Verdict {
		case "good":
			o.GoodRuns++
		case "bad":
			o.BadRuns++
		}
	}
	return o, true
}

// costs are the expected seconds of a step's parts, from the steps so far
// (defaults before any: a kernel build dwarfs a run; a command is cheap).
func (p Params) costs(steps []journal.Step) search.Costs {
	var build, step, run float64
	var nb, ns, nr int
	for _, st := range steps {
		if st.State != journal.StateDone || st.Test == nil {
			continue
		}
		b := 0.0
		if st.Build != nil && *st.Build > 1 {
			// A build that took a second or more was a real build, not an
			// artifact-cache hit.
			b = *st.Build
			build += b
			nb++
		}
		step += max(st.Duration-b-*st.Test, 0)
		ns++
		for _, a := range st.Attempts {
			run += a.Duration
			nr++
		}
	}
	c := search.Costs{Step: 0.1, Run: 1}
	if p.Kernel != nil {
		c = search.Costs{Build: 300, Step: 20, Run: 10}
	}
	if nb > 0 {
		c.Build = build / float64(nb)
	}
	if ns > 0 {
		c.Step = step / float64(ns)
	}
	if nr > 0 {
		c.Run = max(run/float64(nr), 0.01)
	}
	return c
}
