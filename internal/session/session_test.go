package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/gittest"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/pipeline"
)

// fakePipe judges commits by ancestry of the culprit and fails with an
// infrastructure error on chosen calls.
type fakePipe struct {
	repo    *git.Repo
	culprit string
	failOn  map[int]bool
	calls   int
	tested  map[string]int
}

func (f *fakePipe) Evaluate(ctx context.Context, req pipeline.Request) (pipeline.Outcome, error) {
	f.calls++
	if f.failOn[f.calls] {
		return pipeline.Outcome{}, outcome.InfraErr("build", errors.New("disk full (injected)"))
	}
	f.tested[req.Commit]++
	bad, err := f.repo.IsAncestor(ctx, f.culprit, req.Commit)
	if err != nil {
		return pipeline.Outcome{}, err
	}
	v := outcome.Good
	if bad {
		v = outcome.Bad
	}
	return pipeline.Outcome{Runs: []pipeline.Run{{Verdict: v, Reason: "fake"}}}, nil
}

func TestInfraErrorIsNeverAVerdict(t *testing.T) {
	var b gittest.Builder
	tip := b.Linear(-1, 64)
	r := b.Write(t)
	ctx := context.Background()
	no := false
	p, _, err := Resolve(ctx, Input{Repo: r.Dir, Good: []string{"c0"}, Bad: r.SHAs[tip], Exec: "unused", Confirm: &no, RevertCheck: "off"})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakePipe{repo: &git.Repo{Dir: r.Dir}, culprit: r.SHAs[40], failOn: map[int]bool{3: true}, tested: map[string]int{}}
	s := &Session{StateDir: t.TempDir(), CacheDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewPipeline: func(Params, *git.Worktree) pipeline.Pipeline { return fake }}
	res, err := s.Start(ctx, p, false)
	if !outcome.IsInfra(err) || res == nil || res.Outcome != journal.OutcomeInterrupted {
		t.Fatalf("want an infrastructure error leaving the run resumable, got %v, %+v", err, res)
	}
	j, _ := journal.Open(s.RunDir(res.RunID))
	steps, _ := j.Steps()
	j.Close()
	if len(steps) != 3 || steps[2].Verdict != "error" || steps[2].State != journal.StateError {
		t.Fatalf("steps after the fault: %+v", steps)
	}
	res, err = s.Resume(ctx, res.RunID)
	if err != nil || res.Outcome != journal.OutcomeFound || res.Culprit != r.SHAs[40] {
		t.Fatalf("resume: %v %+v", err, res)
	}
	for c, n := range fake.tested {
		if n != 1 {
			t.Errorf("commit %s judged %d times", c[:8], n)
		}
	}
}
