package session

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/report"
	"github.com/firstbad/firstbad/internal/search"
	"github.com/firstbad/firstbad/internal/target"
)

// Report assembles a run's report from its journal (and, for the culprit's
// details, firstbad's clone of the repository). It works at any time,
// during a run too.
func (s *Session) Report(ctx context.Context, id string) (*report.Report, error) {
	return s.report(ctx, id, false)
}

// FullReport is Report plus what takes seconds to find: the maintainers and
// lists to CC about the culprit, when the tree has scripts/get_maintainer.pl.
func (s *Session) FullReport(ctx context.Context, id string) (*report.Report, error) {
	return s.report(ctx, id, true)
}

func (s *Session) report(ctx context.Context, id string, full bool) (*report.Report, error) {
	j, err := journal.Open(s.RunDir(id))
	if errors.Is(err, journal.ErrNoJournal) {
		return nil, outcome.InputErr("no run %q in %s", id, s.RunsDir())
	}
	if err != nil {
		return nil, outcome.InfraErr("journal", err)
	}
	defer j.Close()
	run, err := j.Run()
	if err != nil {
		return nil, outcome.InfraErr("journal", err)
	}
	run = s.liveness(run)
	var p Params
	if err := json.Unmarshal(run.Params, &p); err != nil {
		return nil, fmt.Errorf("run %s: parameters unreadable: %w", id, err)
	}
	steps, err := j.Steps()
	if err != nil {
		return nil, err
	}
	r := &report.Report{RunID: run.ID, Outcome: run.Outcome, Culprit: run.Culprit, Candidates: run.Candidates,
		Message: run.Message, Terms: report.Terms{Old: p.TermOld, New: p.TermNew}, Repo: p.Repo, Bad: p.Bad,
		Good: p.Good, Paths: p.Paths, FirstParent: p.FirstParent, Exec: p.Exec, Created: run.Created,
		Finished: run.Finished, Steps: steps, Strategy: p.Strategy}
	r.Rerun = rerun(run.ID)
	var sig signature
	for _, st := range steps {
		sig.learn(st)
	}
	r.Signature, r.SignatureFrom = sig.String(), sig.from(p.TermNew)
	r.RevertOn = p.RevertOn
	if r.RevertOn == "" {
		r.RevertOn = p.Bad
	}
	for _, st := range steps {
		if st.Evidence.GuestRoot != "" {
			r.GuestRoot = st.Evidence.GuestRoot
			break
		}
	}
	if k := p.Kernel; k != nil && k.Target != "" && k.Target != "qemu" {
		r.Target, r.TargetHosts = k.Target, targetHosts(steps)
	}
	repo := s.readRepo(ctx, p.Repo)
	if repo == nil {
		return r, nil
	}
	if run.Culprit != "" {
		if info, err := repo.Info(ctx, run.Culprit, true); err == nil {
			r.CulpritInfo = &info
		}
		r.Flags = culpritFlags(ctx, repo, p, run.Culprit, steps)
		if full {
			r.Maintainers = maintainers(ctx, repo, run.Culprit)
		}
	}
	r.NumCands = run.Total
	r.Remaining = make([]int, len(steps))
	for i, st := range steps {
		r.Remaining[i] = st.Remaining
	}
	if run.Total == 0 || p.bayes() {
		// A journal from before the counts were kept, or a Bayesian
		// run's posterior: replay the search over the graph.
		replay(ctx, repo, p, steps, r)
	}
	if p.fast() || p.cells() {
		r.SameKernel = neverBuilt(ctx, repo, p, steps)
	}
	return r, nil
}

// neverBuilt is, for a search over kernels, how many candidates the marks
// (or proofs) as the run's steps leave them kept from being built.
func neverBuilt(ctx context.Context, repo *git.Repo, p Params, steps []journal.Step) int {
	nodes, _, files, err := readRange(ctx, repo, p)
	if err != nil {
		return 0
	}
	g, err := search.NewGraph(nodes, p.Bad, p.FirstParent)
	if err != nil {
		return 0
	}
	strategy, err := p.strategy(g, nodes, files, steps)
	l, ok := strategy.(learner)
	if err != nil || !ok {
		return 0
	}
	for _, st := range steps {
		if err := l.learn(st); err != nil {
			return 0
		}
	}
	return l.neverBuilt(steps)
}

// readRepo is a repository to read commit details from: firstbad's clone if
// there is one, else the user's repository (read only).
func (s *Session) readRepo(ctx context.Context, userRepo string) *git.Repo {
	src, err := git.Open(ctx, userRepo)
	if err != nil {
		return nil
	}
	gitDir, err := src.GitDir(ctx)
	if err != nil {
		return src
	}
	clone := &git.Repo{Dir: cachedir.CloneGit(git.CloneDir(s.CacheDir, gitDir))}
	if _, err := clone.Run(ctx, "rev-parse", "--git-dir"); err == nil {
		return clone
	}
	return src
}

// targetHosts collects the VM hosts the steps' consoles name (in order,
// once each): a remote host's identity is part of the evidence.
func targetHosts(steps []journal.Step) []string {
	var hosts []string
	for _, st := range steps {
		f, err := os.Open(st.Evidence.ConsoleLog)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for i := 0; i < 3 && sc.Scan(); i++ {
			if h, ok := strings.CutPrefix(sc.Text(), target.HostLinePrefix); ok && !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
		f.Close()
	}
	return hosts
}

// rerun is the command line that re-runs one step by hand: in firstbad's
// own checkout, with the run's options, never in the user's repository.
func rerun(id string) func(string) string {
	return func(commit string) string {
		return fmt.Sprintf("firstbad retest %s %s", id, commit)
	}
}

// replay reads the range again and replays the search over the journal's
// steps: how many candidates were left at each search step and, for a
// Bayesian run, the posterior as the journal leaves it.
func replay(ctx context.Context, repo *git.Repo, p Params, steps []journal.Step, r *report.Report) {
	nodes, total, files, err := readRange(ctx, repo, p)
	if err != nil {
		return
	}
	r.NumCands = total
	g, err := search.NewGraph(nodes, p.Bad, p.FirstParent)
	if err != nil {
		return
	}
	strategy, err := p.strategy(g, nodes, files, steps)
	if err != nil {
		return
	}
	obs := p.observations()
	for i, st := range steps {
		if st.Kind == journal.KindSearch {
			if d, err := strategy.Decide(obs); err == nil {
				r.Remaining[i] = d.Remaining
			}
		}
		obs = p.fold(obs, st)
		if l, ok := strategy.(learner); ok {
			_ = l.learn(st) // as the run learned; a failure leaves the replay as it was
		}
	}
	if !p.bayes() {
		return
	}
	if d, err := strategy.Decide(obs); err == nil {
		r.Confidence, r.FailProb, r.FalseAlarm = &d.Confidence, &d.FailProb, &d.FalseAlarm
		r.FalseAlarmLearned = p.FalseAlarmAuto
		for _, c := range d.Posterior {
			r.Posterior = append(r.Posterior, report.Likely{Commit: c.Commit, P: c.P})
		}
	}
}

// maintainers runs the tree's scripts/get_maintainer.pl on the culprit's
// patch, in a checkout of firstbad's clone. None if the script is absent.
func maintainers(ctx context.Context, repo *git.Repo, culprit string) []string {
	slots, _ := filepath.Glob(filepath.Join(cachedir.CloneSlots(filepath.Dir(repo.Dir)), "*", "scripts", "get_maintainer.pl"))
	if len(slots) == 0 {
		return nil
	}
	tree := filepath.Dir(filepath.Dir(slots[0]))
	patch, err := repo.Run(ctx, "show", "--format=email", "--end-of-options", culprit)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "perl", "scripts/get_maintainer.pl", "--no-rolestats", "--no-git", "--no-git-fallback", "--no-tree", "-")
	cmd.Dir = tree
	cmd.Stdin = bytes.NewReader(patch)
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	var who []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			who = append(who, l)
		}
	}
	return who
}
