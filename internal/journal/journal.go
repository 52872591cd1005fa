// Package journal is the durable record of one bisect run: a SQLite
// database in WAL mode, one per run directory. Every step is written in its
// own transaction before the next one starts, so a run killed at any point
// (kill -9 included) can be resumed from what the journal holds.
package journal

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// FileName is the journal's file inside a run directory.
const FileName = "journal.db"

// Outcomes of a run (outcome's names, repeated for the journal's readers).
const (
	OutcomeRunning          = outcome.Running
	OutcomeFound            = outcome.Found
	OutcomeAmbiguous        = outcome.Ambiguous
	OutcomeEndpointMismatch = outcome.EndpointMismatch
	OutcomeBudgetExhausted  = outcome.BudgetExhausted
	OutcomeAborted          = outcome.RunAborted
	OutcomeInterrupted      = outcome.RunInterrupted
)

// Step kinds: search steps feed the search; the others are recorded apart.
const (
	KindSearch   = "search"
	KindEndpoint = "endpoint"
	KindConfirm  = "confirm"
	// KindCheck is git bisect run's check of a first step that exits 126
	// or 127: the same code on the good commit means the command is broken.
	KindCheck = "check"
	// KindRevert tests the culprit reverted on a tip (a commit made in
	// firstbad's clone).
	KindRevert = "revert"
	// KindMark is a human's verdict on a commit (firstbad mark): it
	// overrides what the steps said of that commit.
	KindMark = "mark"
	// KindRetest is a step run again by hand (firstbad retest): its runs
	// add to the commit's.
	KindRetest = "retest"
)

// Step states.
const (
	StateRunning     = "running"
	StateDone        = "done"
	StateInterrupted = "interrupted"
	StateError       = "error"
)

// Run is a run's header.
type Run struct {
	ID         string
	Created    time.Time
	Params     json.RawMessage // the session's parameters, as it wrote them
	Outcome    string
	Culprit    string
	Candidates []string
	Message    string
	Finished   time.Time
	// Total is the number of testable candidates when the run started.
	Total int
}

// Evidence points at the files behind a verdict.
type Evidence struct {
	BuildLog   string `json:"build_log"`
	ConsoleLog string `json:"console_log"`
	TestOutput string `json:"test_output"`
	Kernel     string `json:"kernel,omitempty"`
	// Toolchain is what built the kernel (release or root, gcc, binutils)
	// and BuildFixes the upstream fixes applied to the tree for it.
	Toolchain  string   `json:"toolchain,omitempty"`
	BuildFixes []string `json:"build_fixes,omitempty"`
	// GuestRoot is what the test ran on when not firstbad's initramfs
	// (--rootfs): the host, the image or the Debian root, with its hash.
	GuestRoot string `json:"guest_root,omitempty"`
}

// Attempt is one run of the reproducer within a step.
type Attempt struct {
	Verdict  string  `json:"verdict"`
	ExitCode int     `json:"exit_code"`
	Duration float64 `json:"duration_s"`
	Crash    string  `json:"crash,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	Output   string  `json:"output,omitempty"`
}

// Step is one evaluated commit.
type Step struct {
	Seq      int
	Kind     string
	Commit   string
	Subject  string
	State    string
	Verdict  string // good, bad, skip; or error (infrastructure, interrupted)
	Reason   string
	Flaky    bool
	Started  time.Time
	Finished time.Time
	Duration float64
	Build    *float64
	Boot     *float64
	Test     *float64
	Crash    string
	Evidence Evidence
	Attempts []Attempt
	// Remaining is the number of candidates left when the search chose
	// this step (0 for other kinds).
	Remaining int
}

// Journal is an open run journal.
type Journal struct {
	Dir string
	db  *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS run (
	id TEXT PRIMARY KEY,
	created TEXT NOT NULL,
	params TEXT NOT NULL,
	outcome TEXT NOT NULL,
	culprit TEXT NOT NULL DEFAULT '',
	candidates TEXT NOT NULL DEFAULT '[]',
	message TEXT NOT NULL DEFAULT '',
	finished TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS step (
	seq INTEGER PRIMARY KEY,
	kind TEXT NOT NULL,
	commit_id TEXT NOT NULL,
	subject TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL,
	verdict TEXT NOT NULL DEFAULT '',
	reason TEXT NOT NULL DEFAULT '',
	flaky INTEGER NOT NULL DEFAULT 0,
	started TEXT NOT NULL,
	finished TEXT NOT NULL DEFAULT '',
	duration_s REAL NOT NULL DEFAULT 0,
	build_s REAL,
	boot_s REAL,
	test_s REAL,
	crash TEXT NOT NULL DEFAULT '',
	evidence TEXT NOT NULL DEFAULT '{}',
	attempts TEXT NOT NULL DEFAULT '[]'
);
`

// columns added since the first schema: journals of older runs get them
// on open.
var migrations = []struct{ table, column, decl string }{
	{"run", "total", "INTEGER NOT NULL DEFAULT 0"},
	{"step", "remaining", "INTEGER NOT NULL DEFAULT 0"},
}

// dsn names the database as a file: URI with the path escaped, so that
// '?', '#', '%' or a newline in a state dir cannot end the path early (and
// put the journal elsewhere). SQLite decodes the escapes.
func dsn(path string, mode openMode) string {
	u := url.URL{Scheme: "file", Path: path, OmitHost: true}
	q := "_pragma=busy_timeout(10000)"
	switch mode {
	case readOnly:
		q += "&mode=ro"
	case immutable:
		// A read-only file system: SQLite cannot make the WAL's shared
		// memory file, and nothing can change the database anyway.
		q += "&mode=ro&immutable=1"
	default:
		q += "&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	}
	return u.String() + "?" + q
}

// openMode is how a journal is opened.
type openMode int

const (
	readWrite openMode = iota
	readOnly
	immutable
)

func open(dir string) (*Journal, error) {
	path := filepath.Join(dir, FileName)
	j, err := openAt(dir, path, readWrite)
	if err != nil && (errors.Is(err, ErrReadOnly) || errors.Is(err, ErrFull)) {
		// A state dir that cannot be written still has a readable
		// journal: status and report work; writes fail with the cause.
		for _, m := range []openMode{readOnly, immutable} {
			if ro, rerr := openAt(dir, path, m); rerr == nil {
				return ro, nil
			}
		}
	}
	return j, err
}

func openAt(dir, path string, mode openMode) (*Journal, error) {
	db, err := sql.Open("sqlite", dsn(path, mode))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	j := &Journal{Dir: dir, db: db}
	if mode != readWrite {
		if _, err := j.Run(); err != nil {
			db.Close()
			return nil, j.wrap(err)
		}
		return j, nil
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, j.wrap(err)
	}
	if err := j.migrate(); err != nil {
		db.Close()
		return nil, j.wrap(err)
	}
	return j, nil
}

// migrate adds the columns an older journal lacks.
func (j *Journal) migrate() error {
	for _, m := range migrations {
		var n int
		if err := j.db.QueryRow(`SELECT COUNT(*) FROM pragma_table_info(?) WHERE name=?`, m.table, m.column).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := j.db.Exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", m.table, m.column, m.decl)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Create makes a new run directory with its journal.
func Create(dir string, r Run) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	j, err := open(dir)
	if err != nil {
		return nil, err
	}
	if r.Outcome == "" {
		r.Outcome = OutcomeRunning
	}
	_, err = j.db.Exec(`INSERT INTO run(id, created, params, outcome, total) VALUES(?,?,?,?,?)`,
		r.ID, r.Created.UTC().Format(time.RFC3339Nano), string(r.Params), r.Outcome, r.Total)
	if err != nil {
		j.Close()
		return nil, j.wrap(err)
	}
	return j, nil
}

// ErrNoJournal reports a run directory without a readable journal.
var ErrNoJournal = errors.New("no journal")

// Open opens an existing run's journal.
func Open(dir string) (*Journal, error) {
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoJournal)
	}
	j, err := open(dir)
	if err != nil {
		return nil, err
	}
	if _, err := j.Run(); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// Close closes the journal.
func (j *Journal) Close() error { return j.db.Close() }

// Run reads the run's header.
func (j *Journal) Run() (Run, error) {
	var r Run
	var created, params, cands, finished string
	err := j.db.QueryRow(`SELECT id, created, params, outcome, culprit, candidates, message, finished, total FROM run`).
		Scan(&r.ID, &created, &params, &r.Outcome, &r.Culprit, &cands, &r.Message, &finished, &r.Total)
	if err != nil {
		return Run{}, j.wrap(err)
	}
	r.Created, _ = time.Parse(time.RFC3339Nano, created)
	r.Finished, _ = time.Parse(time.RFC3339Nano, finished)
	r.Params = json.RawMessage(params)
	if err := json.Unmarshal([]byte(cands), &r.Candidates); err != nil {
		return Run{}, fmt.Errorf("journal %s: candidates: %w", j.Dir, err)
	}
	return r, nil
}

// SetOutcome records how the run ended (or that it runs again, on resume).
func (j *Journal) SetOutcome(outcome, culprit string, candidates []string, message string) error {
	if candidates == nil {
		candidates = []string{}
	}
	c, _ := json.Marshal(candidates)
	finished := ""
	if outcome != OutcomeRunning {
		finished = time.Now().UTC().Format(time.RFC3339Nano)
	}
	_, err := j.db.Exec(`UPDATE run SET outcome=?, culprit=?, candidates=?, message=?, finished=?`,
		outcome, culprit, string(c), message, finished)
	return j.wrap(err)
}

// BeginStep records that a step started and returns its sequence number.
func (j *Journal) BeginStep(s Step) (int, error) {
	res, err := j.db.Exec(`INSERT INTO step(kind, commit_id, subject, state, started, remaining) VALUES(?,?,?,?,?,?)`,
		s.Kind, s.Commit, s.Subject, StateRunning, time.Now().UTC().Format(time.RFC3339Nano), s.Remaining)
	if err != nil {
		return 0, j.wrap(err)
	}
	id, err := res.LastInsertId()
	return int(id), err
}

// FinishStep records a step's result in one transaction.
func (j *Journal) FinishStep(s Step) error {
	ev, _ := json.Marshal(s.Evidence)
	if s.Attempts == nil {
		s.Attempts = []Attempt{}
	}
	at, _ := json.Marshal(s.Attempts)
	if s.Finished.IsZero() {
		s.Finished = time.Now()
	}
	res, err := j.db.Exec(`UPDATE step SET state=?, verdict=?, reason=?, flaky=?, finished=?, duration_s=?,
		build_s=?, boot_s=?, test_s=?, crash=?, evidence=?, attempts=? WHERE seq=?`,
		s.State, s.Verdict, s.Reason, s.Flaky, s.Finished.UTC().Format(time.RFC3339Nano), s.Duration,
		s.Build, s.Boot, s.Test, s.Crash, string(ev), string(at), s.Seq)
	if err != nil {
		return j.wrap(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("journal: no step %d", s.Seq)
	}
	return nil
}

// InterruptRunning marks every step still "running" (its process was killed
// or stopped) as interrupted: no verdict, to be run again on resume.
func (j *Journal) InterruptRunning(reason string) (int, error) {
	res, err := j.db.Exec(`UPDATE step SET state=?, verdict='error', reason=?, finished=? WHERE state=?`,
		StateInterrupted, reason, time.Now().UTC().Format(time.RFC3339Nano), StateRunning)
	if err != nil {
		return 0, j.wrap(err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Steps returns every step in order.
func (j *Journal) Steps() ([]Step, error) {
	rows, err := j.db.Query(`SELECT seq, kind, commit_id, subject, state, verdict, reason, flaky, started, finished,
		duration_s, build_s, boot_s, test_s, crash, evidence, attempts, remaining FROM step ORDER BY seq`)
	if err != nil {
		return nil, j.wrap(err)
	}
	defer rows.Close()
	var steps []Step
	for rows.Next() {
		var s Step
		var started, finished, ev, at string
		if err := rows.Scan(&s.Seq, &s.Kind, &s.Commit, &s.Subject, &s.State, &s.Verdict, &s.Reason, &s.Flaky,
			&started, &finished, &s.Duration, &s.Build, &s.Boot, &s.Test, &s.Crash, &ev, &at, &s.Remaining); err != nil {
			return nil, j.wrap(err)
		}
		s.Started, _ = time.Parse(time.RFC3339Nano, started)
		s.Finished, _ = time.Parse(time.RFC3339Nano, finished)
		if err := json.Unmarshal([]byte(ev), &s.Evidence); err != nil {
			return nil, fmt.Errorf("journal step %d evidence: %w", s.Seq, err)
		}
		if err := json.Unmarshal([]byte(at), &s.Attempts); err != nil {
			return nil, fmt.Errorf("journal step %d runs: %w", s.Seq, err)
		}
		steps = append(steps, s)
	}
	return steps, rows.Err()
}
