package journal

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestJournalRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	j, err := Create(dir, Run{ID: "r1", Created: time.Now(), Params: json.RawMessage(`{"a":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := j.BeginStep(Step{Kind: KindSearch, Commit: "c1", Subject: "s <1>"})
	if err != nil {
		t.Fatal(err)
	}
	test := 0.5
	done := Step{Seq: seq, Kind: KindSearch, Commit: "c1", Subject: "s <1>", State: StateDone, Verdict: "bad", Reason: "exit 1",
		Duration: 0.6, Test: &test, Evidence: Evidence{TestOutput: "/x/run-1.log"},
		Attempts: []Attempt{{Verdict: "bad", ExitCode: 1, Duration: 0.5}}}
	if err := j.FinishStep(done); err != nil {
		t.Fatal(err)
	}
	if _, err := j.BeginStep(Step{Kind: KindSearch, Commit: "c2"}); err != nil {
		t.Fatal(err)
	}
	j.Close()

	// As after kill -9: reopen, the unfinished step is marked interrupted.
	j, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if n, err := j.InterruptRunning("killed"); err != nil || n != 1 {
		t.Fatalf("InterruptRunning = %d, %v", n, err)
	}
	steps, err := j.Steps()
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{done, {Seq: 2, Kind: KindSearch, Commit: "c2", State: StateInterrupted, Verdict: "error", Reason: "killed", Attempts: []Attempt{}}}
	if diff := cmp.Diff(want, steps, cmpopts.IgnoreFields(Step{}, "Started", "Finished")); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if err := j.SetOutcome(OutcomeFound, "c1", []string{"c1"}, ""); err != nil {
		t.Fatal(err)
	}
	r, err := j.Run()
	if err != nil || r.Outcome != OutcomeFound || r.Culprit != "c1" || string(r.Params) != `{"a":1}` || r.Finished.IsZero() {
		t.Errorf("run = %+v, %v", r, err)
	}
}

func TestCorruptJournal(t *testing.T) {
	// Damaged: the message says so and never advises removing the run.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("this is not a database, just text long enough"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if !errors.Is(err, ErrCorrupt) || strings.Contains(err.Error(), "remove") {
		t.Fatalf("opening a corrupt journal: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("opening a missing journal succeeded")
	}
}

func TestJournalPathWithURIChars(t *testing.T) {
	// Each of these once ended the database path early: the journal went
	// to another file (an existing empty one became a database).
	for _, name := range []string{"q?x", "h#x", "p%41x", "s x", "n\nx", "all?#% \nx"} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, name)
			// Where a parser that stops at ?, # or % would put it.
			decoy := filepath.Join(parent, name[:strings.IndexAny(name+"?", "?#%")])
			if decoy != dir {
				if err := os.WriteFile(decoy, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			j, err := Create(dir, Run{ID: "r", Created: time.Now(), Params: json.RawMessage(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			j.Close()
			if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Size() == 0 {
				t.Fatalf("journal not at %q: %v", dir, err)
			}
			if fi, err := os.Stat(decoy); err == nil && !fi.IsDir() && fi.Size() != 0 {
				t.Fatalf("%q was written (%d bytes)", decoy, fi.Size())
			}
			if j, err := Open(dir); err != nil {
				t.Fatal(err)
			} else {
				j.Close()
			}
		})
	}
}

func TestJournalReadOnlyAndFull(t *testing.T) {
	if os.Getuid() == 0 {
		// root writes through permissions; a read-only bind mount would
		// need a mount namespace. The classification is checked directly.
		j := &Journal{Dir: "/x"}
		for _, c := range []struct {
			err  error
			want error
		}{{syscall.EROFS, ErrReadOnly}, {syscall.ENOSPC, ErrFull}, {syscall.EACCES, ErrReadOnly}} {
			if got := j.wrap(c.err); !errors.Is(got, c.want) {
				t.Errorf("wrap(%v) = %v, want %v", c.err, got, c.want)
			}
		}
		return
	}
	dir := filepath.Join(t.TempDir(), "run")
	j, err := Create(dir, Run{ID: "r", Created: time.Now(), Params: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	os.Chmod(dir, 0o555)
	defer os.Chmod(dir, 0o755)
	j, err = Open(dir)
	if err != nil {
		t.Fatalf("a read-only journal should still open for reading: %v", err)
	}
	defer j.Close()
	if err := j.SetOutcome(OutcomeFound, "", nil, ""); !errors.Is(err, ErrReadOnly) {
		t.Errorf("write to a read-only journal: %v", err)
	}
}
