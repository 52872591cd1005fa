package session

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/report"
)

// Report assembles a run's report from its journal (and, for the culprit's
// details, firstbad's clone of the repository). It works at any time,
// during a run too.
func (s *Session) Report(ctx context.Context, id string) (*report.Report, error) {
	j, err := journal.Open(s.RunDir(id))
	if err != nil {
		return nil, inputErr("no run %q in %s", id, s.RunsDir())
	}
	defer j.Close()
	run, err := j.Run()
	if err != nil {
		return nil, err
	}
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
		Finished: run.Finished, Steps: steps}
	repo := s.readRepo(ctx, p.Repo)
	if repo == nil {
		return r, nil
	}
	if run.Culprit != "" {
		if info, err := repo.Info(ctx, run.Culprit, true); err == nil {
			r.CulpritInfo = &info
		}
	}
	if cs, err := repo.RevList(ctx, git.Range{Bad: p.Bad, Good: p.Good, FirstParent: p.FirstParent, Paths: p.Paths}); err == nil {
		for _, c := range cs {
			if !c.TreeSame {
				r.NumCands++
			}
		}
	}
	return r, nil
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
	clone := &git.Repo{Dir: git.CloneDir(s.CacheDir, gitDir) + "/git"}
	if _, err := clone.Run(ctx, "rev-parse", "--git-dir"); err == nil {
		return clone
	}
	return src
}
