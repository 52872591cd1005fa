// Package session runs one bisect: it wires the search, the pipeline and the
// journal together, and resumes a run from its journal.
package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/firstbad/firstbad/internal/bisectlog"
	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/search"
)

// Duration is a time.Duration that reads and writes as "1m30s" in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Observation is a verdict known before the search starts (from a bisect
// log or a user's --skip), in old/new terms.
type Observation struct {
	Commit  string `json:"commit"`
	Verdict string `json:"verdict"`
}

// Params are a run's resolved parameters, kept in its journal so that
// resume needs nothing else.
type Params struct {
	Repo         string        `json:"repo"`
	BadRef       string        `json:"bad_ref"`
	GoodRefs     []string      `json:"good_refs"`
	Bad          string        `json:"bad"`
	Good         []string      `json:"good"`
	Exec         string        `json:"exec"`
	Paths        []string      `json:"paths,omitempty"`
	FirstParent  bool          `json:"first_parent,omitempty"`
	TermOld      string        `json:"term_old"`
	TermNew      string        `json:"term_new"`
	Invert       bool          `json:"invert,omitempty"`
	Timeout      Duration      `json:"timeout"`
	Repeat       int           `json:"repeat"`
	Observations []Observation `json:"observations,omitempty"`
	// Strategy is classic (git's choices) or bayes (flaky tests); the
	// Bayesian one takes the false-alarm rate, the confidence to reach
	// and a budget of runs.
	Strategy   string  `json:"strategy"`
	FalseAlarm float64 `json:"false_alarm_rate,omitempty"`
	Confidence float64 `json:"confidence,omitempty"`
	MaxRuns    int     `json:"max_runs,omitempty"`
	// Kernel, when set, makes each step build, boot and run a guest test
	// instead of running Exec.
	Kernel *pipeline.KernelConfig `json:"kernel,omitempty"`
	// EndpointCheck is lazy, upfront or off.
	EndpointCheck string `json:"endpoint_check"`
	// Confirm retests the culprit and its parent after the search.
	Confirm bool `json:"confirm"`
}

// Fingerprint identifies "the same arguments" across runs.
func (p Params) Fingerprint() string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Input is what the user asked for, before refs are resolved.
type Input struct {
	Repo        string
	Good        []string
	Bad         string
	Exec        string
	Paths       []string
	FirstParent bool
	TermOld     string
	TermNew     string
	Fix         bool
	Timeout     time.Duration
	Repeat      int
	Skips       []string // REV or A..B
	FromLog     string   // path of a git bisect log
	Kernel      *pipeline.KernelConfig
	// EndpointCheck is lazy (default), upfront or off; Confirm is nil for
	// the default (on for kernel runs).
	EndpointCheck string
	Confirm       *bool
	// Strategy is classic (default) or bayes; the others are bayes only
	// (zero: the defaults).
	Strategy   string
	FalseAlarm float64
	Confidence float64
	MaxRuns    int
}

// Resolve checks the input and resolves every ref in the user's repository
// (read only). Every problem is an input error naming it.
func Resolve(ctx context.Context, in Input) (Params, *git.Repo, error) {
	p := Params{Exec: in.Exec, Paths: in.Paths, FirstParent: in.FirstParent, Timeout: Duration(in.Timeout),
		Repeat: max(in.Repeat, 1), Strategy: "classic", TermOld: "good", TermNew: "bad"}
	p.Kernel = in.Kernel
	switch {
	case in.Kernel != nil && strings.TrimSpace(in.Exec) != "":
		return p, nil, outcome.InputErr("give either --exec or --guest-test, not both")
	case in.Kernel != nil && in.Kernel.GuestTest == "" && in.Kernel.Host == nil:
		return p, nil, outcome.InputErr("give the test with --guest-test FILE (in the guest) or --host-test FILE (on the host)")
	case in.Kernel == nil && strings.TrimSpace(in.Exec) == "":
		return p, nil, outcome.InputErr("nothing to run: give the reproducer with --exec 'CMD' (exit 0 good, 1-127 bad, 125 skip) or a kernel guest test with --guest-test FILE")
	}
	switch in.EndpointCheck {
	case "":
		p.EndpointCheck = "lazy"
	case "lazy", "upfront", "off":
		p.EndpointCheck = in.EndpointCheck
	default:
		return p, nil, outcome.InputErr("--endpoint-check must be lazy, upfront or off")
	}
	p.Confirm = in.Kernel != nil
	if in.Confirm != nil {
		p.Confirm = *in.Confirm
	}
	if in.Repeat < 0 {
		return p, nil, outcome.InputErr("--repeat must be at least 1")
	}
	if err := p.setStrategy(in); err != nil {
		return p, nil, err
	}
	switch {
	case in.Fix && (in.TermOld != "" || in.TermNew != ""):
		return p, nil, outcome.InputErr("--fix sets the terms itself: use either --fix or --term-old/--term-new")
	case in.Fix:
		p.TermOld, p.TermNew, p.Invert = "broken", "fixed", true
	case in.TermOld != "" || in.TermNew != "":
		if in.TermOld == "" || in.TermNew == "" || in.TermOld == in.TermNew {
			return p, nil, outcome.InputErr("give both --term-old and --term-new, and make them differ")
		}
		for _, t := range []string{in.TermOld, in.TermNew} {
			if t == "skip" || strings.ContainsAny(t, " \t\n'\"\\") || strings.HasPrefix(t, "-") {
				return p, nil, outcome.InputErr("%q cannot be a term: use a plain word other than skip", t)
			}
		}
		p.TermOld, p.TermNew = in.TermOld, in.TermNew
	}
	if in.Repo == "" {
		return p, nil, outcome.InputErr("give the repository with --repo DIR")
	}
	repo, err := git.Open(ctx, in.Repo)
	if err != nil {
		return p, nil, outcome.InputErr("%v", err)
	}
	p.Repo = repo.Dir

	var log *bisectlog.Log
	if in.FromLog != "" {
		f, err := os.Open(in.FromLog)
		if err != nil {
			return p, nil, outcome.InputErr("--from-log: %v", err)
		}
		log, err = bisectlog.Parse(f)
		f.Close()
		if err != nil {
			return p, nil, outcome.InputErr("--from-log %s: %v", in.FromLog, err)
		}
		if in.Bad == "" {
			in.Bad = log.Bad
		}
		if len(in.Good) == 0 {
			in.Good = log.Good
		}
		if len(in.Paths) == 0 {
			p.Paths = log.Paths
		}
		p.FirstParent = p.FirstParent || log.FirstParent
	}
	if in.Bad == "" {
		return p, nil, outcome.InputErr("give the %s commit with --bad REF", p.TermNew)
	}
	if len(in.Good) == 0 {
		return p, nil, outcome.InputErr("give at least one %s commit with --good REF", p.TermOld)
	}
	if in.Fix {
		// The fixed (--good) commit is the new end; the broken (--bad)
		// one the old end.
		if len(in.Good) != 1 {
			return p, nil, outcome.InputErr("with --fix give exactly one --good (fixed) commit")
		}
		in.Bad, in.Good = in.Good[0], []string{in.Bad}
	}
	resolve := func(ref string) (string, error) {
		sha, err := repo.ResolveCommit(ctx, ref)
		if errors.Is(err, git.ErrUnknownRef) {
			return "", outcome.InputErr("unknown ref %q: no such commit in %s", ref, repo.Dir)
		}
		return sha, err
	}
	p.BadRef, p.GoodRefs = in.Bad, in.Good
	if p.Bad, err = resolve(in.Bad); err != nil {
		return p, nil, err
	}
	for _, g := range in.Good {
		sha, err := resolve(g)
		if err != nil {
			return p, nil, err
		}
		if sha == p.Bad {
			return p, nil, outcome.InputErr("the %s and %s commits are the same (%s): nothing to bisect", p.TermOld, p.TermNew, short(sha))
		}
		ok, err := repo.IsAncestor(ctx, sha, p.Bad)
		if err != nil {
			return p, nil, err
		}
		if !ok {
			hint := "if you are looking for the commit that fixed something, add --fix (then --good is the newer, fixed commit)"
			if in.Fix || p.TermOld != "good" {
				hint = "the " + p.TermOld + " commit must be the older one"
			}
			if newer, _ := repo.IsAncestor(ctx, p.Bad, sha); !newer {
				hint = "they are on unrelated branches; pick a " + p.TermOld + " commit that is an ancestor of the " + p.TermNew + " one"
			}
			return p, nil, outcome.InputErr("%s commit %s (%s) is not an ancestor of %s commit %s (%s): %s",
				p.TermOld, g, short(sha), p.TermNew, in.Bad, short(p.Bad), hint)
		}
		p.Good = append(p.Good, sha)
	}
	if p.Kernel != nil {
		if err := checkKernelRange(ctx, repo, p); err != nil {
			return p, nil, err
		}
	}
	if log != nil {
		for _, e := range log.Entries {
			sha, err := resolve(e.Rev)
			if err != nil {
				return p, nil, err
			}
			v := "skip"
			switch e.Term {
			case log.TermOld:
				v = "good"
			case log.TermNew:
				v = "bad"
			}
			p.Observations = append(p.Observations, Observation{Commit: sha, Verdict: v})
		}
	}
	for _, s := range in.Skips {
		shas, err := skipSet(ctx, repo, s)
		if err != nil {
			return p, nil, err
		}
		for _, sha := range shas {
			p.Observations = append(p.Observations, Observation{Commit: sha, Verdict: "skip"})
		}
	}
	return p, repo, nil
}

// skipSet resolves "REV" or "A..B" (the commits in B not in A, as git bisect
// skip takes it) in the user's repository.
func skipSet(ctx context.Context, repo *git.Repo, spec string) ([]string, error) {
	a, b, isRange := strings.Cut(spec, "..")
	if !isRange {
		sha, err := repo.ResolveCommit(ctx, spec)
		if err != nil {
			return nil, outcome.InputErr("--skip %q: unknown ref", spec)
		}
		return []string{sha}, nil
	}
	from, err := repo.ResolveCommit(ctx, a)
	if err != nil {
		return nil, outcome.InputErr("--skip %q: unknown ref %q", spec, a)
	}
	to, err := repo.ResolveCommit(ctx, b)
	if err != nil {
		return nil, outcome.InputErr("--skip %q: unknown ref %q", spec, b)
	}
	commits, err := repo.RevList(ctx, git.Range{Bad: to, Good: []string{from}})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range commits {
		out = append(out, c.ID)
	}
	return out, nil
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// observations turns the recorded pre-search verdicts into search input.
func (p Params) observations() []search.Observation {
	var obs []search.Observation
	for _, o := range p.Observations {
		if v, err := outcome.ParseVerdict(o.Verdict); err == nil {
			obs = append(obs, search.Observation{Commit: o.Commit, Verdict: v})
		}
	}
	return obs
}

// checkKernelRange fails early for a repository that is not a kernel tree,
// and for a --kconfig option that no Kconfig file defines at either end of
// the range (which would otherwise skip every step).
func checkKernelRange(ctx context.Context, repo *git.Repo, p Params) error {
	mk, err := repo.Run(ctx, "show", "--end-of-options", p.Bad+":Makefile")
	if err != nil || !strings.Contains(string(mk), "kernelversion") {
		return outcome.InputErr("%s is not a Linux kernel tree at %s (no top-level Makefile with a kernelversion target)", repo.Dir, short(p.Bad))
	}
	for _, f := range p.Kernel.Build.Fragments {
		for _, o := range f.Options {
			if o.Value == "n" {
				continue
			}
			sym := strings.TrimPrefix(o.Name, "CONFIG_")
			found := false
			for _, rev := range []string{p.Bad, p.Good[0]} {
				_, err := repo.Run(ctx, "grep", "-q", "-E", `^\s*(menu)?config\s+`+sym+`\s*$`, rev, "--", "*Kconfig*")
				if err == nil {
					found = true
					break
				}
			}
			if !found {
				return outcome.InputErr("%s (%s) is not defined by any Kconfig file at %s or %s: no commit in the range can satisfy it (renamed? check the spelling)",
					o.Name, o.Where, short(p.Bad), short(p.Good[0]))
			}
		}
	}
	return nil
}
