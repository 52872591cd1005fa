package journal

import (
	"encoding/json"
	"os"
	"path/filepath"
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
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("this is not a database, just text long enough"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("opening a corrupt journal succeeded")
	}
	if _, err := Open(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("opening a missing journal succeeded")
	}
}
