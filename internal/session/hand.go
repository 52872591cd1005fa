package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/lock"
	"github.com/firstbad/firstbad/internal/outcome"
)

// held is a run opened to go on with it (resume) or to change it by hand:
// its lock, journal, header and parameters.
type held struct {
	j   *journal.Journal
	l   *lock.Lock
	hdr journal.Run
	p   Params
}

func (h *held) close() { h.j.Close(); h.l.Release() }

// hold takes a run's lock and opens its journal (refused while it runs).
func (s *Session) hold(id string) (*held, error) {
	l, err := lock.TryAcquire(filepath.Join(s.RunDir(id), "lock"))
	if err != nil {
		var busy *lock.HeldError
		if errors.As(err, &busy) {
			return nil, outcome.InputErr("run %s is running now (pid %d): stop it first, or wait for it", id, busy.PID)
		}
		return nil, outcome.InfraErr("state dir", err)
	}
	h := &held{l: l}
	if h.j, err = journal.Open(s.RunDir(id)); err != nil {
		l.Release()
		return nil, outcome.InfraErr("journal", err)
	}
	if h.hdr, err = h.j.Run(); err != nil {
		h.close()
		return nil, outcome.InfraErr("journal", err)
	}
	if err := json.Unmarshal(h.hdr.Params, &h.p); err != nil {
		h.close()
		return nil, outcome.InfraErr("journal", fmt.Errorf("run %s: parameters unreadable: %w", id, err))
	}
	return h, nil
}

// Mark records a human's verdict on a commit of a run (good, bad or skip,
// or the run's own terms): it overrides what the steps said of it, and the
// run is reopened for `firstbad resume` to continue from there.
func (s *Session) Mark(ctx context.Context, id, ref, verdict, reason string) (string, error) {
	h, err := s.hold(id)
	if err != nil {
		return "", err
	}
	defer h.close()
	v, err := h.p.verdictOf(verdict)
	if err != nil {
		return "", err
	}
	sha, subject, err := s.commitOf(ctx, h.p, ref)
	if err != nil {
		return "", err
	}
	if reason == "" {
		return "", outcome.InputErr("say why with --reason TEXT: the report shows it beside the verdict it overrides")
	}
	st := journal.Step{Kind: journal.KindMark, Commit: sha, Subject: subject, Verdict: v, Reason: "marked by hand: " + reason}
	seq, err := h.j.BeginStep(st)
	if err == nil {
		st.Seq, st.State = seq, journal.StateDone
		err = h.j.FinishStep(st)
	}
	if err != nil {
		return "", outcome.InfraErr("journal", err)
	}
	return sha, s.reopen(h, fmt.Sprintf("%s marked %s by hand", short(sha), verdict))
}

// Retest runs a commit's step again (repeat runs; 0: the run's --repeat)
// and adds its runs to the run, reopened for `firstbad resume`.
func (s *Session) Retest(ctx context.Context, id, ref string, repeat int) (journal.Step, error) {
	h, err := s.hold(id)
	if err != nil {
		return journal.Step{}, err
	}
	defer h.close()
	sha, _, err := s.commitOf(ctx, h.p, ref)
	if err != nil {
		return journal.Step{}, err
	}
	prep, err := s.prepare(ctx, h.p)
	if err != nil {
		return journal.Step{}, err
	}
	r, release, err := s.setUp(ctx, h.j, h.p, prep)
	if err != nil {
		return journal.Step{}, err
	}
	defer release()
	st, _, err := r.evaluate(ctx, stepAt{kind: journal.KindRetest, commit: sha, runs: repeat})
	if err != nil {
		return st, err
	}
	return st, s.reopen(h, fmt.Sprintf("%s retested by hand: %s", short(sha), st.Verdict))
}

// reopen makes a finished run resumable again after a change by hand.
func (s *Session) reopen(h *held, what string) error {
	msg := fmt.Sprintf("%s: firstbad resume %s continues from there", what, h.hdr.ID)
	if err := h.j.SetOutcome(outcome.RunInterrupted, "", nil, msg); err != nil {
		return outcome.InfraErr("journal", err)
	}
	return nil
}

// verdictOf reads a verdict given by hand: good, bad, skip or the run's
// terms.
func (p Params) verdictOf(s string) (string, error) {
	switch s {
	case "good", p.TermOld:
		return "good", nil
	case "bad", p.TermNew:
		return "bad", nil
	case "skip":
		return "skip", nil
	}
	return "", outcome.InputErr("verdict %q: give %s, %s or skip", s, p.TermOld, p.TermNew)
}

// commitOf resolves a commit given by hand in the run's repository (read
// only) and checks that the run's range holds it.
func (s *Session) commitOf(ctx context.Context, p Params, ref string) (sha, subject string, err error) {
	repo := s.readRepo(ctx, p.Repo)
	if repo == nil {
		return "", "", outcome.InputErr("the repository of this run (%s) is gone", p.Repo)
	}
	if sha, err = resolveRef(ctx, repo, ref); err != nil {
		return "", "", err
	}
	in, err := repo.IsAncestor(ctx, sha, p.Bad)
	if err != nil {
		return "", "", outcome.InfraErr("git", err)
	}
	if !in {
		return "", "", outcome.InputErr("%s (%s) is not in this run's range (not an ancestor of %s)", ref, short(sha), short(p.Bad))
	}
	info, _ := repo.Info(ctx, sha, false)
	return sha, info.Subject, nil
}
