// Package report renders a run from its journal: Markdown, self-contained
// HTML, JSON (the CLI contract's shape) and `git bisect log` text. Commit
// subjects, author names and test output are untrusted: HTML escapes them,
// and text for terminals has control characters removed.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/firstbad/firstbad/internal/bisectlog"
	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
)

// Terms name the two states; verdicts are always good (old) / bad (new).
type Terms struct {
	Old string `json:"old"`
	New string `json:"new"`
}

// Report is everything a report shows of one run.
type Report struct {
	RunID       string
	Outcome     string
	Culprit     string
	Candidates  []string
	Message     string
	Terms       Terms
	Repo        string
	Bad         string
	Good        []string
	Paths       []string
	FirstParent bool
	Exec        string
	Created     time.Time
	Finished    time.Time
	Steps       []journal.Step
	CulpritInfo *git.Info // nil if not found
	Maintainers []string  // to CC, when the tree can tell
	NumCands    int       // size of the initial candidate set
	// SameKernel is, in a search over kernels (--strategy fast), how many
	// candidates change no file the builds read: never built or tested.
	SameKernel int
	// Remaining is, per step, the candidates left when it was chosen
	// (0 where unknown, e.g. endpoint checks).
	Remaining []int
	// Rerun gives the command line that re-runs one step (nil: none).
	Rerun func(commit string) string
	// Strategy is fast, classic or bayes. A Bayesian run also has its answer's
	// posterior probability, the most likely first bad commits and the
	// estimated probability that a run fails on a bad commit.
	Strategy   string
	Confidence *float64
	Posterior  []Likely
	FailProb   *float64
	// FalseAlarm is the false-alarm rate, estimated (FalseAlarmLearned)
	// or as given.
	FalseAlarm        *float64
	FalseAlarmLearned bool
	// Target is where kernels booted when not on this machine (a URL), and
	// TargetHosts the VM hosts the verdicts came from (name, kernel, QEMU).
	Target      string
	TargetHosts []string
	// GuestRoot says what the guest test ran on when not firstbad's
	// busybox initramfs (--rootfs: which host, image or Debian root).
	GuestRoot string
	// Flags are the reasons to doubt the culprit; RevertOn is the tip the
	// revert check reverted it on.
	Flags    []Flag
	RevertOn string
	// Signature is the failure the run is about (its first bad step's
	// crash title or exit code), "" for none; SignatureFrom names that
	// step.
	Signature, SignatureFrom string
}

// TargetJSON names a remote target and the hosts it ran on.
type TargetJSON struct {
	URL   string   `json:"url"`
	Hosts []string `json:"hosts"`
}

// Likely is a commit with its posterior probability of being the first
// bad one.
type Likely struct {
	Commit string  `json:"commit"`
	P      float64 `json:"p"`
}

// Confirmation is the retest of the culprit and its parent, and the
// revert check.
type Confirmation struct {
	Culprit        *jsonStep `json:"culprit"`
	Parent         *jsonStep `json:"parent"`
	Confirmed      bool      `json:"confirmed"`
	IdenticalImage bool      `json:"identical_image"`
	Revert         *Revert   `json:"revert,omitempty"`
}

// Revert is the revert check: the culprit reverted on a tip, tested.
type Revert struct {
	// Commit is the revert commit (in firstbad's clone); "" when none
	// could be made (Result says why).
	Commit  string    `json:"commit,omitempty"`
	On      string    `json:"on"`
	Verdict string    `json:"verdict"`
	Result  string    `json:"result"`
	Cost    float64   `json:"cost_s"`
	Step    *jsonStep `json:"step,omitempty"`
}

// confirmation gathers the checks of the run's culprit (or of the commit
// the run ended on for want of one).
func (r *Report) confirmation() *Confirmation {
	culprit := r.Culprit
	if culprit == "" && len(r.Candidates) > 0 {
		culprit = r.Candidates[0]
	}
	steps := ConfirmSteps(r.Steps, culprit)
	if len(steps) == 0 {
		return nil
	}
	js := r.toJSONSteps(steps)
	c := &Confirmation{Culprit: &js[0]}
	c.Confirmed = steps[0].Verdict == "bad"
	if len(steps) > 1 {
		c.Parent = &js[1]
		c.Confirmed = c.Confirmed && steps[1].Verdict == "good"
		c.IdenticalImage = IdenticalImage(steps)
	}
	c.Revert = r.revert(culprit)
	return c
}

// ConfirmSteps are the confirmation's steps of culprit: its retest, then
// its parent's (the finished confirmation step after it), if there was
// one. A run whose culprit changed (a mark by hand) has older
// confirmations of other commits; a step cut short was run again.
func ConfirmSteps(steps []journal.Step, culprit string) []journal.Step {
	var confirms []journal.Step
	for _, s := range steps {
		if s.Kind == journal.KindConfirm && s.State == journal.StateDone {
			confirms = append(confirms, s)
		}
	}
	i := slices.IndexFunc(confirms, func(s journal.Step) bool { return s.Commit == culprit })
	if i < 0 {
		return nil
	}
	return confirms[i:min(i+2, len(confirms))]
}

// IdenticalImage reports whether a culprit's confirmation found its kernel
// byte-identical to its parent's.
func IdenticalImage(confirms []journal.Step) bool {
	return len(confirms) == 2 && SameContent(confirms[0].Evidence.Kernel, confirms[1].Evidence.Kernel)
}

// FlakyEvidence lists what shows the test is flaky: a step whose runs
// disagreed, a commit that tested both ways in different steps (marks by
// hand aside). Empty for a test that behaved deterministically.
func (r *Report) FlakyEvidence() []string {
	var out []string
	first := map[string]int{} // commit -> index of its first verdict step
	for i, s := range r.Steps {
		if s.State != journal.StateDone || s.Kind == journal.KindMark || s.Verdict == "skip" {
			continue
		}
		if s.Flaky {
			out = append(out, fmt.Sprintf("%s: %s (step %d)", Short(s.Commit), s.Reason, i+1))
		}
		j, seen := first[s.Commit]
		switch {
		case !seen:
			first[s.Commit] = i
		case r.Steps[j].Verdict != s.Verdict:
			out = append(out, fmt.Sprintf("%s: %s in step %d (%s), %s in step %d (%s)", Short(s.Commit),
				r.Term(r.Steps[j].Verdict), j+1, r.Steps[j].Kind, r.Term(s.Verdict), i+1, s.Kind))
			first[s.Commit] = i
		}
	}
	return out
}

// RevertOf reports a revert check's step for culprit: the revert commit's
// (its subject names the culprit), or the record of a revert not made.
func RevertOf(st journal.Step, culprit string) bool {
	return st.Kind == journal.KindRevert && culprit != "" && (st.Commit == culprit || strings.HasPrefix(st.Subject, "Revert "+Short(culprit)+" "))
}

// revert is the revert check of culprit, if it was made.
func (r *Report) revert(culprit string) *Revert {
	for _, s := range r.Steps {
		if !RevertOf(s, culprit) || s.State != journal.StateDone {
			continue
		}
		rv := &Revert{On: r.RevertOn, Verdict: s.Verdict, Cost: s.Duration, Result: s.Reason}
		if s.Commit == culprit {
			return rv // not made: the reason says why
		}
		js := r.toJSONSteps([]journal.Step{s})
		rv.Commit, rv.Step = s.Commit, &js[0]
		switch s.Verdict {
		case "good":
			rv.Result = fmt.Sprintf("reverting %s on %s makes it %s: %s is the cause and the revert is a fix", Short(culprit), Short(r.RevertOn), r.Terms.Old, Short(culprit))
		case "bad":
			rv.Result = fmt.Sprintf("with %s reverted, %s is still %s: %s is not the whole story (another change, or it was not the cause)", Short(culprit), Short(r.RevertOn), r.Terms.New, Short(culprit))
		default:
			rv.Result = fmt.Sprintf("the revert could not be tested: %s", s.Reason)
		}
		return rv
	}
	return nil
}

// SameContent reports whether two files exist and hold the same bytes.
func SameContent(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	da, err1 := os.ReadFile(a)
	db, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}

// Term names a verdict in the run's terms.
func (r *Report) Term(verdict string) string { return r.Terms.Of(verdict) }

// Of names a verdict in these terms (skip and error as they are).
func (t Terms) Of(verdict string) string {
	switch verdict {
	case "good":
		return t.Old
	case "bad":
		return t.New
	}
	return verdict
}

func (r *Report) stepsOf(kinds ...string) []journal.Step {
	var out []journal.Step
	for _, s := range r.Steps {
		if slices.Contains(kinds, s.Kind) {
			out = append(out, s)
		}
	}
	return out
}

type jsonAttempt struct {
	Verdict  string  `json:"verdict"`
	ExitCode int     `json:"exit_code"`
	Duration float64 `json:"duration_s"`
	Crash    *string `json:"crash"`
}

type jsonEvidence struct {
	BuildLog   *string  `json:"build_log"`
	ConsoleLog *string  `json:"console_log"`
	TestOutput *string  `json:"test_output"`
	Toolchain  string   `json:"toolchain,omitempty"`
	BuildFixes []string `json:"build_fixes,omitempty"`
}

type jsonStep struct {
	Commit   string        `json:"commit"`
	Subject  string        `json:"subject"`
	Verdict  string        `json:"verdict"`
	Reason   string        `json:"reason"`
	Flaky    bool          `json:"flaky,omitempty"`
	Duration float64       `json:"duration_s"`
	Build    *float64      `json:"build_s"`
	Boot     *float64      `json:"boot_s"`
	Test     *float64      `json:"test_s"`
	Crash    *string       `json:"crash"`
	Runs     []jsonAttempt `json:"runs"`
	Evidence jsonEvidence  `json:"evidence"`
	Rerun    string        `json:"rerun,omitempty"`
}

type jsonReport struct {
	RunID        string        `json:"run_id"`
	Outcome      string        `json:"outcome"`
	Culprit      *string       `json:"culprit"`
	Candidates   []string      `json:"candidates"`
	Terms        Terms         `json:"terms"`
	Endpoints    []jsonStep    `json:"endpoints"`
	Steps        []jsonStep    `json:"steps"`
	Confirmation *Confirmation `json:"confirmation"`
	Flags        []Flag        `json:"culprit_flags"`
	Signature    string        `json:"signature,omitempty"`
	SignatureOf  string        `json:"signature_from,omitempty"`
	Flaky        bool          `json:"flaky"`
	FlakyWhy     []string      `json:"flaky_evidence,omitempty"`
	Message      string        `json:"message,omitempty"`
	Strategy     string        `json:"strategy"`
	SameKernel   *int          `json:"same_kernel_commits,omitempty"`
	Confidence   *float64      `json:"confidence,omitempty"`
	Posterior    []Likely      `json:"posterior,omitempty"`
	FailProb     *float64      `json:"fail_probability,omitempty"`
	FalseAlarm   *float64      `json:"false_alarm_rate,omitempty"`
	FALearned    bool          `json:"false_alarm_learned,omitempty"`
	Target       *TargetJSON   `json:"target,omitempty"`
	GuestRoot    string        `json:"guest_root,omitempty"`
	Repo         string        `json:"repo"`
	Bad          string        `json:"bad"`
	Good         []string      `json:"good"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (r *Report) toJSONSteps(steps []journal.Step) []jsonStep {
	out := []jsonStep{}
	for _, s := range steps {
		js := jsonStep{Commit: s.Commit, Subject: s.Subject, Verdict: s.Verdict, Reason: s.Reason, Flaky: s.Flaky,
			Duration: s.Duration, Build: s.Build, Boot: s.Boot, Test: s.Test, Crash: nullable(s.Crash),
			Runs: []jsonAttempt{},
			Evidence: jsonEvidence{BuildLog: nullable(s.Evidence.BuildLog), ConsoleLog: nullable(s.Evidence.ConsoleLog),
				TestOutput: nullable(s.Evidence.TestOutput), Toolchain: s.Evidence.Toolchain, BuildFixes: s.Evidence.BuildFixes}}
		for _, a := range s.Attempts {
			js.Runs = append(js.Runs, jsonAttempt{Verdict: a.Verdict, ExitCode: a.ExitCode, Duration: a.Duration, Crash: nullable(a.Crash)})
		}
		if r.Rerun != nil {
			js.Rerun = r.Rerun(s.Commit)
		}
		out = append(out, js)
	}
	return out
}

// JSON writes the CLI contract's JSON object.
func (r *Report) JSON(w io.Writer) error {
	cands := r.Candidates
	if cands == nil {
		cands = []string{}
	}
	jr := jsonReport{RunID: r.RunID, Outcome: r.Outcome, Culprit: nullable(r.Culprit), Candidates: cands,
		Terms: r.Terms, Endpoints: r.toJSONSteps(r.stepsOf(journal.KindEndpoint, journal.KindCheck)), Steps: r.toJSONSteps(r.stepsOf(journal.KindSearch)),
		Message: r.Message, Strategy: r.Strategy, SameKernel: sameKernel(r), Confidence: r.Confidence, Posterior: r.Posterior, FailProb: r.FailProb,
		FalseAlarm: r.FalseAlarm, FALearned: r.FalseAlarmLearned, Repo: r.Repo, Bad: r.Bad, Good: r.Good}
	if c := r.confirmation(); c != nil {
		jr.Confirmation = c
	}
	if r.Culprit != "" {
		jr.Flags = append([]Flag{}, r.Flags...)
	}
	jr.Signature, jr.SignatureOf = r.Signature, r.SignatureFrom
	jr.FlakyWhy = r.FlakyEvidence()
	jr.Flaky = len(jr.FlakyWhy) > 0
	jr.GuestRoot = r.GuestRoot
	if r.Target != "" {
		jr.Target = &TargetJSON{URL: r.Target, Hosts: append([]string{}, r.TargetHosts...)}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jr)
}

// GitLog writes a log that `git bisect replay` accepts in the user's repo
// and that reaches the same state as this run.
func (r *Report) GitLog(w io.Writer) error {
	l := &bisectlog.Log{Bad: r.Bad, Good: r.Good, Paths: r.Paths, FirstParent: r.FirstParent, TermOld: r.Terms.Old, TermNew: r.Terms.New}
	var vs []bisectlog.Verdict
	for _, s := range r.stepsOf(journal.KindSearch, journal.KindMark) {
		if s.State != journal.StateDone {
			continue
		}
		subject := s.Subject
		if s.Kind == journal.KindMark {
			// As the search takes it: the mark replaces what was said of
			// its commit, from where it was made (git keeps the last bad).
			vs = slices.DeleteFunc(vs, func(v bisectlog.Verdict) bool { return v.Commit == s.Commit })
			subject += " (" + s.Reason + ")"
		}
		vs = append(vs, bisectlog.Verdict{Term: r.Term(s.Verdict), Commit: s.Commit, Subject: subject})
	}
	conclusion := ""
	switch {
	case r.Culprit != "" && r.CulpritInfo != nil:
		conclusion = fmt.Sprintf("first %s commit: [%s] %s", r.Terms.New, r.Culprit, r.CulpritInfo.Subject)
	case r.Culprit != "":
		conclusion = fmt.Sprintf("first %s commit: [%s]", r.Terms.New, r.Culprit)
	case len(r.Candidates) > 0:
		conclusion = fmt.Sprintf("only skipped commits left to test; the first %s commit could be any of: %s", r.Terms.New, strings.Join(r.Candidates, " "))
	}
	return bisectlog.Format(w, l, vs, conclusion)
}

// Clean makes untrusted text safe for a terminal, a Markdown file and an
// HTML page: invalid UTF-8 is replaced, and control characters (escape
// sequences included, tab excepted) and the bidirectional-text controls
// that can make text read differently than it is (U+202E, "Trojan
// Source") become visible escapes.
func Clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, "\\x%02x", r)
		case isBidi(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isBidi reports the invisible characters that reorder or isolate text.
func isBidi(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// CodeSpan is untrusted text as a Markdown code span: cleaned, and fenced
// with more backticks than it contains in a row (a code span takes no
// other escapes, so its text can be copied exactly).
func CodeSpan(s string) string {
	s = Clean(s)
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || longest > 0 && strings.HasPrefix(s, " ") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// Short is a 12-character hash.
func Short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// Flag is a reason to doubt a culprit, with the next step it suggests.
type Flag struct {
	Kind string `json:"kind"`
	Text string `json:"text"`
	Next string `json:"next"`
}

// sameKernel is the JSON's count of candidates a search over kernels never
// built (absent for the other strategies).
func sameKernel(r *Report) *int {
	if r.Strategy != "fast" {
		return nil
	}
	return &r.SameKernel
}
