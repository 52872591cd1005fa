package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/lock"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/search"
)

// ErrInterrupted is returned when the run was stopped (Ctrl-C, SIGTERM)
// before it finished; the journal says what is left to do.
var ErrInterrupted = outcome.ErrInterrupted

// Progress is what a live display shows.
type Progress struct {
	RunID    string
	Step     int // 1-based search step
	EstSteps int // steps expected in all (done + left)
	Commit   string
	Subject  string
	Stage    string // test, done
	Started  time.Time
	Verdict  string // set when Stage is "done"
	Reason   string
	Kind     string // search, endpoint, check or confirm
}

// Label is "step k/≈n" for search steps, else the kind.
func (p Progress) Label() string {
	if p.Kind != "" && p.Kind != journal.KindSearch {
		return p.Kind
	}
	return fmt.Sprintf("step %d/≈%d", p.Step, p.EstSteps)
}

// Session runs and resumes bisects under a state dir and a cache dir.
type Session struct {
	StateDir string
	CacheDir string
	Log      *slog.Logger
	Progress func(Progress)
	// Tester boots and tests kernels for a kernel run: the caller makes
	// it once from the run's parameters (and closes it).
	Tester *pipeline.GuestTest
	// NewPipeline, if set, replaces the pipeline a run would build (tests
	// use it to inject faults).
	NewPipeline func(p Params, wt *git.Worktree) pipeline.Pipeline
}

// Params reads a run's parameters from its journal.
func (s *Session) Params(id string) (Params, error) {
	var p Params
	j, err := journal.Open(s.RunDir(id))
	if err != nil {
		return p, outcome.InfraErr("journal", err)
	}
	defer j.Close()
	r, err := j.Run()
	if err != nil {
		return p, outcome.InfraErr("journal", err)
	}
	if err := json.Unmarshal(r.Params, &p); err != nil {
		return p, outcome.InfraErr("journal", fmt.Errorf("run %s: parameters unreadable: %w", id, err))
	}
	return p, nil
}

// Result is how a run ended.
type Result struct {
	RunID      string
	Outcome    string
	Culprit    string
	Candidates []string
	Message    string
}

// RunsDir holds one directory per run.
func (s *Session) RunsDir() string { return filepath.Join(s.StateDir, "runs") }

// RunDir is the directory of one run.
func (s *Session) RunDir(id string) string { return filepath.Join(s.RunsDir(), id) }

func newRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// Start begins a new run with resolved params. If an unfinished run with the
// same parameters exists, it refuses and names it, unless fresh is set.
// Nothing is recorded for a run whose range cannot be bisected.
func (s *Session) Start(ctx context.Context, p Params, fresh bool) (*Result, error) {
	// Held from the duplicate check until the new run holds its own lock:
	// two identical runs started at once cannot both pass the check.
	starting, err := lock.Acquire(ctx, filepath.Join(s.RunsDir(), ".start.lock"), nil)
	if err != nil {
		return nil, outcome.InfraErr("state dir", err)
	}
	defer starting.Release()
	if !fresh {
		if err := s.refuseDuplicate(p); err != nil {
			return nil, err
		}
	}
	prep, err := s.prepare(ctx, p)
	if err != nil {
		return nil, err
	}
	j, l, err := s.create(p, prep.total)
	if err != nil {
		return nil, err
	}
	starting.Release()
	defer l.Release()
	defer j.Close()
	return s.runLoop(ctx, j, p, prep)
}

// refuseDuplicate is an input error naming an unfinished run with the same
// parameters.
func (s *Session) refuseDuplicate(p Params) error {
	runs, _ := s.List()
	for _, r := range runs {
		if r.Outcome != journal.OutcomeRunning && r.Outcome != journal.OutcomeInterrupted {
			continue
		}
		var old Params
		if json.Unmarshal(r.Params, &old) == nil && old.Fingerprint() == p.Fingerprint() {
			return outcome.InputErr("run %s with the same arguments is unfinished (%s): continue it with `firstbad resume %s`, or pass --new to start over", r.ID, r.Outcome, r.ID)
		}
	}
	return nil
}

// create makes the run's journal whole in a hidden directory and renames it
// into place (a controller killed meanwhile leaves no half-made run), then
// takes the run's lock.
func (s *Session) create(p Params, total int) (*journal.Journal, *lock.Lock, error) {
	params, err := json.Marshal(p)
	if err != nil {
		return nil, nil, err
	}
	id := newRunID()
	dir := s.RunDir(id)
	tmp := filepath.Join(s.RunsDir(), ".new-"+id)
	j, err := journal.Create(tmp, journal.Run{ID: id, Created: time.Now(), Params: params, Total: total})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, outcome.InfraErr("journal", err)
	}
	j.Close()
	if err := os.Rename(tmp, dir); err != nil {
		return nil, nil, outcome.InfraErr("journal", err)
	}
	l, err := lock.TryAcquire(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, nil, outcome.InfraErr("state dir "+s.StateDir, err)
	}
	if j, err = journal.Open(dir); err != nil {
		l.Release()
		return nil, nil, outcome.InfraErr("journal", err)
	}
	return j, l, nil
}

// Resume continues an unfinished run. A finished run's result is returned
// as it stands.
func (s *Session) Resume(ctx context.Context, id string) (*Result, error) {
	h, err := s.hold(id)
	if err != nil {
		return nil, err
	}
	defer h.close()
	if r := h.hdr; r.Outcome != journal.OutcomeRunning && r.Outcome != journal.OutcomeInterrupted {
		return &Result{RunID: r.ID, Outcome: r.Outcome, Culprit: r.Culprit, Candidates: r.Candidates, Message: r.Message}, nil
	}
	if n, err := h.j.InterruptRunning("the controller stopped during this step"); err != nil {
		return nil, outcome.InfraErr("journal", err)
	} else if n > 0 {
		s.Log.Info("a step was cut short when the run stopped; it runs again", "run", id)
	}
	prep, err := s.prepare(ctx, h.p)
	if err != nil {
		return nil, err
	}
	return s.runLoop(ctx, h.j, h.p, prep)
}

// prepared is what a run needs from the repository.
type prepared struct {
	clone *git.Clone
	graph *search.Graph
	nodes []search.Commit
	files map[string][]string // what each commit changes (--strategy fast)
	total int                 // candidates that can be tested (touching the paths, if any)
}

// prepare brings firstbad's clone up to date and reads the candidate graph
// (one rev-list pass, or two for a path-limited range).
func (s *Session) prepare(ctx context.Context, p Params) (*prepared, error) {
	src, err := git.Open(ctx, p.Repo)
	if err != nil {
		return nil, outcome.InputErr("the repository of this run: %v", err)
	}
	clone, err := git.EnsureClone(ctx, src, s.CacheDir)
	if err != nil {
		return nil, outcome.InfraErr("clone", err)
	}
	ends := append([]string{p.Bad}, p.Good...)
	if p.RevertOn != "" {
		ends = append(ends, p.RevertOn)
	}
	if err := clone.Sync(ctx, ends...); err != nil {
		return nil, outcome.InfraErr("clone", err)
	}
	g, total, files, err := readRange(ctx, &clone.Repo, p)
	if err != nil {
		return nil, err
	}
	if total == 0 {
		return nil, outcome.InputErr("no commit between %s and %s touches %s: nothing to test (git bisect: \"No testable commit found\"); check the paths after --",
			short(p.Good[0]), short(p.Bad), strings.Join(p.Paths, " "))
	}
	graph, err := search.NewGraph(g, p.Bad, p.FirstParent)
	if err != nil {
		return nil, outcome.InfraErr("graph", err)
	}
	return &prepared{clone: clone, graph: graph, nodes: g, files: files, total: total}, nil
}

// readRange reads the run's range: its commits as search nodes, how many
// can be tested and, for a search over kernels, what each commit changes.
func readRange(ctx context.Context, repo *git.Repo, p Params) (nodes []search.Commit, total int, files map[string][]string, err error) {
	commits, err := repo.RevList(ctx, git.Range{Bad: p.Bad, Good: p.Good, FirstParent: p.FirstParent, Paths: p.Paths})
	if err != nil {
		return nil, 0, nil, outcome.InfraErr("rev-list", err)
	}
	nodes, total = graphOf(commits, p)
	if p.fast() || p.cells() {
		if files, err = repo.ChangedFiles(ctx, git.Range{Bad: p.Bad, Good: p.Good, FirstParent: p.FirstParent}); err != nil {
			return nil, 0, nil, outcome.InfraErr("git log", err)
		}
	}
	return nodes, total, files, nil
}

// graphOf turns a rev-list into search nodes and counts the testable ones.
func graphOf(commits []git.Commit, p Params) ([]search.Commit, int) {
	nodes := make([]search.Commit, len(commits))
	total := 0
	for i, c := range commits {
		nodes[i] = search.Commit{ID: c.ID, Parents: c.Parents, Time: c.Time, TreeSame: c.TreeSame}
		if !c.TreeSame {
			total++
		}
	}
	return nodes, total
}

// List returns the runs in the state dir, oldest first. Runs whose journal
// cannot be read are returned with Outcome "unreadable"; a run the journal
// calls running whose controller is gone (killed) is reported interrupted.
func (s *Session) List() ([]journal.Run, error) {
	entries, err := os.ReadDir(s.RunsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var runs []journal.Run
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".new-") {
			// A run whose creation was cut short: never started.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				os.RemoveAll(filepath.Join(s.RunsDir(), e.Name()))
			}
			continue
		}
		if e.IsDir() {
			runs = append(runs, s.readRun(e.Name()))
		}
	}
	sort.Slice(runs, func(a, b int) bool { return runs[a].ID < runs[b].ID })
	return runs, nil
}

// readRun reads one run's header for a listing.
func (s *Session) readRun(id string) journal.Run {
	j, err := journal.Open(s.RunDir(id))
	if err != nil {
		return journal.Run{ID: id, Outcome: "unreadable", Message: err.Error()}
	}
	r, err := j.Run()
	j.Close()
	if err != nil {
		return journal.Run{ID: id, Outcome: "unreadable", Message: err.Error()}
	}
	return s.liveness(r)
}

// liveness corrects a run recorded as running whose controller is gone
// (killed before it could say so): the run's lock is free.
func (s *Session) liveness(r journal.Run) journal.Run {
	if r.Outcome != journal.OutcomeRunning {
		return r
	}
	if held, _ := lock.Held(filepath.Join(s.RunDir(r.ID), "lock")); !held {
		r.Outcome = journal.OutcomeInterrupted
		r.Message = fmt.Sprintf("its controller is gone (killed?): continue it with firstbad resume %s", r.ID)
	}
	return r
}

// Latest picks the run a command without RUN means: the most recent
// unfinished one, else (if any) the most recent.
func (s *Session) Latest(unfinishedOnly bool) (string, error) {
	runs, err := s.List()
	if err != nil {
		return "", err
	}
	for i := len(runs) - 1; i >= 0; i-- {
		if o := runs[i].Outcome; o == journal.OutcomeRunning || o == journal.OutcomeInterrupted {
			return runs[i].ID, nil
		}
	}
	if unfinishedOnly || len(runs) == 0 {
		return "", outcome.InputErr("no unfinished run in %s", s.RunsDir())
	}
	return runs[len(runs)-1].ID, nil
}

func (s *Session) progress(p Progress) {
	if s.Progress != nil {
		s.Progress(p)
	}
}
