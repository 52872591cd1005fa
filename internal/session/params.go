// Package session runs one bisect: it wires the search, the pipeline and the
// journal together, and resumes a run from its journal.
package session

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/search"
)

// Duration is a time.Duration that reads and writes as "1m30s" in JSON.
type Duration time.Duration

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Observation is a verdict known before the search starts (from a bisect
// log or a user's --skip), in old/new terms.
type Observation struct {
	Commit  string `json:"commit"`
	Verdict string `json:"verdict"`
}

// Params are a run's resolved parameters, kept in its journal so that
// resume needs nothing else.
type Params struct {
	Repo         string        `json:"repo"`
	BadRef       string        `json:"bad_ref"`
	GoodRefs     []string      `json:"good_refs"`
	Bad          string        `json:"bad"`
	Good         []string      `json:"good"`
	Exec         string        `json:"exec"`
	Paths        []string      `json:"paths,omitempty"`
	FirstParent  bool          `json:"first_parent,omitempty"`
	TermOld      string        `json:"term_old"`
	TermNew      string        `json:"term_new"`
	Invert       bool          `json:"invert,omitempty"`
	Timeout      Duration      `json:"timeout"`
	Repeat       int           `json:"repeat"`
	Observations []Observation `json:"observations,omitempty"`
	// Strategy is classic (git's choices) or bayes (flaky tests); the
	// Bayesian one takes the false-alarm rate, the confidence to reach
	// and a budget of runs.
	Strategy   string  `json:"strategy"`
	FalseAlarm float64 `json:"false_alarm_rate,omitempty"`
	// FalseAlarmAuto learns the false-alarm rate from the runs (the
	// default; journals from before it had a fixed rate).
	FalseAlarmAuto bool    `json:"false_alarm_auto,omitempty"`
	Confidence     float64 `json:"confidence,omitempty"`
	MaxRuns        int     `json:"max_runs,omitempty"`
	// Kernel, when set, makes each step build, boot and run a guest test
	// instead of running Exec.
	Kernel *pipeline.KernelConfig `json:"kernel,omitempty"`
	// EndpointCheck is bad (the bad endpoint first, the good ones
	// lazily), lazy, upfront or off.
	EndpointCheck string `json:"endpoint_check"`
	// Confirm retests the culprit and its parent after the search.
	Confirm bool `json:"confirm"`
	// NoSubmodules leaves submodules empty in firstbad's checkout.
	NoSubmodules bool `json:"no_submodules,omitempty"`
	// RevertCheck reverts the culprit on RevertOn (the bad commit unless
	// --revert-on) and tests that; AcceptSuspect ends a run whose
	// culprit is flagged as found all the same.
	RevertCheck   bool   `json:"revert_check,omitempty"`
	RevertOn      string `json:"revert_on,omitempty"`
	AcceptSuspect bool   `json:"accept_suspect,omitempty"`
	// RetestSameKernel boots a commit whose kernel an earlier step tested
	// (by default that step's verdict is taken: sametested.go).
	RetestSameKernel bool `json:"retest_same_kernel,omitempty"`
	// MaxBuildFailures stops a kernel run after this many search steps
	// in a row whose kernel did not build (0: never).
	MaxBuildFailures int `json:"max_build_failures,omitempty"`
}

// DefaultMaxBuildFailures is how many failed builds in a row stop a
// kernel run unless --max-build-failures says otherwise.
const DefaultMaxBuildFailures = 3

// Fingerprint identifies "the same arguments" across runs.
func (p Params) Fingerprint() string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Input is what the user asked for, before refs are resolved.
type Input struct {
	Repo        string
	Good        []string
	Bad         string
	Exec        string
	Paths       []string
	FirstParent bool
	TermOld     string
	TermNew     string
	Fix         bool
	Timeout     time.Duration
	Repeat      int
	Skips       []string // REV or A..B
	FromLog     string   // path of a git bisect log
	Kernel      *pipeline.KernelConfig
	// EndpointCheck is bad, lazy, upfront or off ("": bad for a kernel
	// run, else lazy); Confirm is nil for
	// the default (on for kernel runs).
	EndpointCheck string
	Confirm       *bool
	// Strategy is classic (default) or bayes; the others are bayes only
	// (zero: the defaults).
	Strategy string
	// FalseAlarm is "" or "auto" (learned from the runs) or a rate.
	FalseAlarm string
	Confidence float64
	MaxRuns    int
	// NoSubmodules leaves submodules empty in firstbad's checkout.
	NoSubmodules bool
	// RevertCheck is on (default) or off; RevertOn a ref ("": the bad
	// commit).
	RevertCheck   string
	RevertOn      string
	AcceptSuspect bool
	// RetestSameKernel: see Params.
	RetestSameKernel bool
	// MaxBuildFailures: see Params (nil: DefaultMaxBuildFailures for
	// kernel runs).
	MaxBuildFailures *int
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// observations turns the recorded pre-search verdicts into search input.
func (p Params) observations() []search.Observation {
	var obs []search.Observation
	for _, o := range p.Observations {
		if v, err := outcome.ParseVerdict(o.Verdict); err == nil {
			obs = append(obs, search.Observation{Commit: o.Commit, Verdict: v})
		}
	}
	return obs
}
