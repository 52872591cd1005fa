package session

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"

	"github.com/firstbad/firstbad/internal/bisectlog"
	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/outcome"
)

// MaxRepeat bounds the runs per step.
const MaxRepeat = 1000

// Resolve checks the input and resolves every ref in the user's repository
// (read only). Every problem is an input error naming it.
func Resolve(ctx context.Context, in Input) (Params, *git.Repo, error) {
	p := Params{Exec: in.Exec, Paths: in.Paths, FirstParent: in.FirstParent, Timeout: Duration(in.Timeout),
		Repeat: max(in.Repeat, 1), Strategy: "classic", TermOld: "good", TermNew: "bad", Kernel: in.Kernel, NoSubmodules: in.NoSubmodules}
	if err := p.setMode(in); err != nil {
		return p, nil, err
	}
	if err := p.setStrategy(in); err != nil {
		return p, nil, err
	}
	if err := p.setTerms(ctx, in); err != nil {
		return p, nil, err
	}
	if in.Repo == "" {
		return p, nil, outcome.InputErr("give the repository with --repo DIR")
	}
	repo, err := git.Open(ctx, in.Repo)
	if err != nil {
		return p, nil, outcome.InputErr("%v", err)
	}
	p.Repo = repo.Dir
	log, err := readLog(in.FromLog)
	if err != nil {
		return p, nil, err
	}
	in = p.fromLog(in, log)
	if err := p.resolveEnds(ctx, repo, in); err != nil {
		return p, nil, err
	}
	if p.Kernel != nil {
		if err := checkKernelRange(ctx, repo, p); err != nil {
			return p, nil, err
		}
	}
	if err := p.resolveKnown(ctx, repo, log, in.Skips); err != nil {
		return p, nil, err
	}
	return p, repo, nil
}

// setMode checks what runs at each step and how.
func (p *Params) setMode(in Input) error {
	switch {
	case in.Kernel != nil && strings.TrimSpace(in.Exec) != "":
		return outcome.InputErr("give either --exec or --guest-test, not both")
	case in.Kernel != nil && in.Kernel.GuestTest == "" && in.Kernel.Host == nil:
		return outcome.InputErr("give the test with --guest-test FILE (in the guest) or --host-test FILE (on the host)")
	case in.Kernel == nil && strings.TrimSpace(in.Exec) == "":
		return outcome.InputErr("nothing to run: give the reproducer with --exec 'CMD' (exit 0 good, 1-127 bad, 125 skip) or a kernel guest test with --guest-test FILE")
	case in.Repeat < 0 || in.Repeat > MaxRepeat:
		return outcome.InputErr("--repeat must be between 1 and %d", MaxRepeat)
	case in.Timeout < 0:
		return outcome.InputErr("--timeout must be positive")
	}
	switch in.EndpointCheck {
	case "":
		// A kernel run tests its bad endpoint first: a crash there is
		// the run's signature before any step can judge another one, and
		// a bad commit that tests good ends the run at its first boot.
		p.EndpointCheck = "lazy"
		if in.Kernel != nil {
			p.EndpointCheck = "bad"
		}
	case "bad", "lazy", "upfront", "off":
		p.EndpointCheck = in.EndpointCheck
	default:
		return outcome.InputErr("--endpoint-check must be bad, lazy, upfront or off")
	}
	// Confirmation and the revert check are on for every run: a flaky
	// test in classic mode otherwise names a wrong culprit silently.
	p.Confirm = true
	if in.Confirm != nil {
		p.Confirm = *in.Confirm
	}
	switch in.RevertCheck {
	case "", "on":
		p.RevertCheck = true
	case "off":
	default:
		return outcome.InputErr("--revert-check must be on or off")
	}
	p.AcceptSuspect = in.AcceptSuspect
	p.RetestSameKernel = in.RetestSameKernel
	if in.Kernel != nil {
		p.MaxBuildFailures = DefaultMaxBuildFailures
	}
	if in.MaxBuildFailures != nil {
		if *in.MaxBuildFailures < 0 {
			return outcome.InputErr("--max-build-failures must be 0 (never stop) or more")
		}
		p.MaxBuildFailures = *in.MaxBuildFailures
	}
	return nil
}

// gitCommands are git bisect's subcommands, which git refuses as terms.
var gitCommands = []string{"help", "start", "skip", "next", "reset", "visualize", "view", "replay", "log", "run", "terms", "good", "bad", "new", "old"}

// setTerms applies --fix or --term-old/--term-new with git's own rules
// (check_term_format), so that `git bisect replay` accepts the run's log.
func (p *Params) setTerms(ctx context.Context, in Input) error {
	switch {
	case in.Fix && (in.TermOld != "" || in.TermNew != ""):
		return outcome.InputErr("--fix sets the terms itself: use either --fix or --term-old/--term-new")
	case in.Fix:
		p.TermOld, p.TermNew, p.Invert = "broken", "fixed", true
		return nil
	case in.TermOld == "" && in.TermNew == "":
		return nil
	case in.TermOld == "" || in.TermNew == "" || in.TermOld == in.TermNew:
		return outcome.InputErr("give both --term-old and --term-new, and make them differ")
	}
	for _, t := range []struct{ flag, term, orig string }{{"--term-old", in.TermOld, "good"}, {"--term-new", in.TermNew, "bad"}} {
		if err := checkTerm(ctx, t.flag, t.term, t.orig); err != nil {
			return err
		}
	}
	p.TermOld, p.TermNew = in.TermOld, in.TermNew
	return nil
}

// checkTerm is git's check_term_format: a valid ref name component, not a
// bisect subcommand, and not the other side's builtin name (a new term
// cannot be "good" or "old", an old one "bad" or "new").
func checkTerm(ctx context.Context, flag, term, orig string) error {
	same := map[string][]string{"good": {"good", "old"}, "bad": {"bad", "new"}}
	switch {
	case slices.Contains(same[orig], term):
		return nil
	case slices.Contains(gitCommands, term):
		return outcome.InputErr("%s %q: git bisect uses that word itself (%s); pick another", flag, term, strings.Join(gitCommands, ", "))
	case term == "" || strings.HasPrefix(term, "-"):
		return outcome.InputErr("%s %q is not a valid term", flag, term)
	}
	r := &git.Repo{Dir: os.TempDir()}
	if _, err := r.Run(ctx, "check-ref-format", "refs/bisect/"+term); err != nil {
		return outcome.InputErr("%s %q is not a valid term: it must be usable in a ref name (refs/bisect/%s)", flag, term, term)
	}
	return nil
}

// readLog reads --from-log, if given.
func readLog(path string) (*bisectlog.Log, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, outcome.InputErr("--from-log: %v", err)
	}
	defer f.Close()
	log, err := bisectlog.Parse(f)
	if err != nil {
		return nil, outcome.InputErr("--from-log %s: %v", path, err)
	}
	return log, nil
}

// fromLog fills what the user left out from the bisect log.
func (p *Params) fromLog(in Input, log *bisectlog.Log) Input {
	if log == nil {
		return in
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
	return in
}

// resolveEnds resolves the bad and good refs and checks that every good
// one is an ancestor of the bad one.
func (p *Params) resolveEnds(ctx context.Context, repo *git.Repo, in Input) error {
	if in.Bad == "" {
		return outcome.InputErr("give the %s commit with --bad REF", p.TermNew)
	}
	if len(in.Good) == 0 {
		return outcome.InputErr("give at least one %s commit with --good REF", p.TermOld)
	}
	if in.Fix {
		// The fixed (--good) commit is the new end; the broken (--bad)
		// one the old end.
		if len(in.Good) != 1 {
			return outcome.InputErr("with --fix give exactly one --good (fixed) commit")
		}
		in.Bad, in.Good = in.Good[0], []string{in.Bad}
	}
	p.BadRef, p.GoodRefs = in.Bad, in.Good
	var err error
	if p.Bad, err = resolveRef(ctx, repo, in.Bad); err != nil {
		return err
	}
	if in.RevertOn != "" {
		if !p.RevertCheck {
			return outcome.InputErr("--revert-on is where the revert check runs: it needs --revert-check on")
		}
		if p.RevertOn, err = resolveRef(ctx, repo, in.RevertOn); err != nil {
			return err
		}
	}
	for _, g := range in.Good {
		sha, err := resolveRef(ctx, repo, g)
		if err != nil {
			return err
		}
		if err := p.checkGood(ctx, repo, g, sha, in); err != nil {
			return err
		}
		p.Good = append(p.Good, sha)
	}
	return nil
}

func resolveRef(ctx context.Context, repo *git.Repo, ref string) (string, error) {
	sha, err := repo.ResolveCommit(ctx, ref)
	if errors.Is(err, git.ErrUnknownRef) {
		return "", outcome.InputErr("unknown ref %q: no such commit in %s", ref, repo.Dir)
	}
	if err != nil {
		return "", outcome.InfraErr("git", err)
	}
	return sha, nil
}

// checkGood says why a good commit cannot bound the range, if it cannot.
func (p *Params) checkGood(ctx context.Context, repo *git.Repo, ref, sha string, in Input) error {
	if sha == p.Bad {
		return outcome.InputErr("the %s and %s commits are the same (%s): nothing to bisect", p.TermOld, p.TermNew, short(sha))
	}
	ok, err := repo.IsAncestor(ctx, sha, p.Bad)
	if err != nil {
		return outcome.InfraErr("git", err)
	}
	if ok {
		return nil
	}
	hint := "if you are looking for the commit that fixed something, add --fix (then --good is the newer, fixed commit)"
	if in.Fix || p.TermOld != "good" {
		hint = "the " + p.TermOld + " commit must be the older one"
	}
	if newer, _ := repo.IsAncestor(ctx, p.Bad, sha); !newer {
		hint = "they are on unrelated branches; pick a " + p.TermOld + " commit that is an ancestor of the " + p.TermNew + " one"
	}
	return outcome.InputErr("%s commit %s (%s) is not an ancestor of %s commit %s (%s): %s",
		p.TermOld, ref, short(sha), p.TermNew, in.Bad, short(p.Bad), hint)
}

// resolveKnown records the verdicts known before the search: a bisect
// log's, and the commits the user skips.
func (p *Params) resolveKnown(ctx context.Context, repo *git.Repo, log *bisectlog.Log, skips []string) error {
	if log != nil {
		for _, e := range log.Entries {
			sha, err := resolveRef(ctx, repo, e.Rev)
			if err != nil {
				return err
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
	for _, s := range skips {
		shas, err := skipSet(ctx, repo, s)
		if err != nil {
			return err
		}
		for _, sha := range shas {
			p.Observations = append(p.Observations, Observation{Commit: sha, Verdict: "skip"})
		}
	}
	return nil
}

// skipSet resolves "REV" or "A..B" (the commits in B not in A, as git
// bisect skip takes it; an empty side is HEAD) in the user's repository.
// "A...B" is refused: git bisect skip has no use for a symmetric
// difference.
func skipSet(ctx context.Context, repo *git.Repo, spec string) ([]string, error) {
	if strings.Contains(spec, "...") {
		return nil, outcome.InputErr("--skip %q: a symmetric range (A...B) is not a set of commits to skip; give A..B (the commits in B but not in A) or one commit", spec)
	}
	a, b, isRange := strings.Cut(spec, "..")
	if !isRange {
		sha, err := repo.ResolveCommit(ctx, spec)
		if err != nil {
			return nil, outcome.InputErr("--skip %q: unknown ref", spec)
		}
		return []string{sha}, nil
	}
	ends := [2]string{a, b}
	for i, ref := range ends {
		if ref == "" {
			ref = "HEAD"
		}
		sha, err := repo.ResolveCommit(ctx, ref)
		if err != nil {
			return nil, outcome.InputErr("--skip %q: unknown ref %q", spec, ref)
		}
		ends[i] = sha
	}
	commits, err := repo.RevList(ctx, git.Range{Bad: ends[1], Good: []string{ends[0]}})
	if err != nil {
		return nil, outcome.InfraErr("git", err)
	}
	out := make([]string, len(commits))
	for i, c := range commits {
		out[i] = c.ID
	}
	return out, nil
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
				if _, err := repo.Run(ctx, "grep", "-q", "-E", `^\s*(menu)?config\s+`+sym+`\s*$`, rev, "--", "*Kconfig*"); err == nil {
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
