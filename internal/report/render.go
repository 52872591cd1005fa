package report

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
)

// totals sums stage times over every step of the run.
func (r *Report) totals() (all, build, boot, test float64) {
	for _, s := range r.Steps {
		all += s.Duration
		if s.Build != nil {
			build += *s.Build
		}
		if s.Boot != nil {
			boot += *s.Boot
		}
		if s.Test != nil {
			test += *s.Test
		}
	}
	return
}

// PosteriorText says how sure a Bayesian run is: the answer's posterior,
// the runner-ups, and how often the test fails on a bad commit; q quotes
// the hashes (Markdown code, or nothing for HTML).
func (r *Report) PosteriorText(q string) string {
	if r.Confidence == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Confidence: %.4f (posterior probability of the answer, Bayesian strategy).", *r.Confidence)
	if r.FailProb != nil {
		fmt.Fprintf(&b, " On %s commits a run fails with estimated probability %.2f.", r.Terms.New, *r.FailProb)
	}
	if r.FalseAlarm != nil {
		how := "as given"
		if r.FalseAlarmLearned {
			how = "estimated from the runs"
		}
		fmt.Fprintf(&b, " On %s commits (false alarms): %.3f, %s.", r.Terms.Old, *r.FalseAlarm, how)
	}
	b.WriteString("\n\nMost likely first " + r.Terms.New + " commits:\n\n")
	for _, l := range r.Posterior {
		fmt.Fprintf(&b, "- %s%s%s %.4f\n", q, Short(l.Commit), q, l.P)
	}
	b.WriteString("\n")
	return b.String()
}

// TrustText lists what the checks after the search said: the
// confirmation, the revert check, and each flag with its next step; q
// quotes hashes.
func (r *Report) TrustText(q string) string {
	var lines []string
	if r.Signature != "" {
		lines = append(lines, fmt.Sprintf("Signature: %s, from %s; a step failing otherwise is told apart.", Clean(r.Signature), Clean(r.SignatureFrom)))
	}
	if c := r.confirmation(); c != nil {
		l := fmt.Sprintf("Confirmation: the culprit retested %s", r.Term(c.Culprit.Verdict))
		if c.Parent != nil {
			l += fmt.Sprintf(", its parent %s%s%s %s", q, Short(c.Parent.Commit), q, r.Term(c.Parent.Verdict))
		}
		if c.Confirmed {
			l += ": confirmed"
		}
		lines = append(lines, l+".")
		if rv := c.Revert; rv != nil {
			lines = append(lines, fmt.Sprintf("Revert check (on %s%s%s, %.1f s): %s.", q, Short(rv.On), q, rv.Cost, Clean(rv.Result)))
		}
	}
	for _, f := range r.Flags {
		lines = append(lines, fmt.Sprintf("Flag %s: %s. Next: %s.", f.Kind, Clean(f.Text), Clean(f.Next)))
	}
	if why := r.FlakyEvidence(); len(why) > 0 {
		l := "The test is flaky: " + Clean(strings.Join(why, "; ")) + "."
		if r.Strategy != "bayes" {
			l += " A classic bisect of a flaky test can name a wrong culprit: run again with --flaky."
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return ""
	}
	return "- " + strings.Join(lines, "\n- ") + "\n"
}

// Headline is the one-line result.
func (r *Report) Headline() string {
	switch r.Outcome {
	case journal.OutcomeFound:
		subj := ""
		if r.CulpritInfo != nil {
			subj = " " + r.CulpritInfo.Subject
		}
		return Clean(fmt.Sprintf("%s is the first %s commit:%s", r.Culprit, r.Terms.New, subj))
	case journal.OutcomeAmbiguous:
		return fmt.Sprintf("only skipped commits are left: the first %s commit is one of %d commits", r.Terms.New, len(r.Candidates))
	case outcome.Suspect:
		if r.Culprit != "" {
			subj := ""
			if r.CulpritInfo != nil {
				subj = " (" + r.CulpritInfo.Subject + ")"
			}
			return Clean(fmt.Sprintf("suspect: the search names %s%s as the first %s commit, but: %s", r.Culprit, subj, r.Terms.New, r.Message))
		}
	case journal.OutcomeInterrupted:
		return fmt.Sprintf("run %s was interrupted: continue it with `firstbad resume %s`", r.RunID, r.RunID)
	}
	msg := r.Outcome
	if r.Message != "" {
		msg += ": " + r.Message
	}
	return Clean(msg)
}

func num(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f", *p)
}

// cell makes untrusted text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.NewReplacer("|", `\|`, "`", "'", "<", `\<`, ">", `\>`).Replace(Clean(s))
	return s
}

// Markdown writes the report as Markdown.
// TargetText says where the kernels booted, when not on this machine.
func (r *Report) TargetText() string {
	if r.Target == "" {
		return ""
	}
	hosts := "no boot reached it"
	if len(r.TargetHosts) > 0 {
		hosts = strings.Join(r.TargetHosts, "; ")
	}
	return fmt.Sprintf("Target: %s; verdicts from VM host %s", r.Target, hosts)
}

func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# firstbad run %s: %s\n\n", r.RunID, r.Outcome)
	fmt.Fprintf(&b, "%s\n\n", r.Headline())
	if c := r.CulpritInfo; c != nil && (r.Outcome == journal.OutcomeFound || r.Outcome == outcome.Suspect) {
		fmt.Fprintf(&b, "- Commit: `%s`\n", c.ID)
		fmt.Fprintf(&b, "- Subject: %s\n", cell(c.Subject))
		fmt.Fprintf(&b, "- Author: %s\n", cell(c.Author))
		fmt.Fprintf(&b, "- Date: %s\n", c.Date.Format("2006-01-02 15:04:05 -0700"))
		if len(c.Files) > 0 {
			files := c.Files
			more := ""
			if len(files) > 20 {
				files, more = files[:20], fmt.Sprintf(" … and %d more", len(c.Files)-20)
			}
			fmt.Fprintf(&b, "- Files: %s%s\n", cell(strings.Join(files, ", ")), more)
		}
		fmt.Fprintf(&b, "- Fixes line: %s\n", CodeSpan(FixesLine(c.ID, c.Subject)))
		if len(r.Maintainers) > 0 {
			fmt.Fprintf(&b, "- To CC: %s\n", cell(strings.Join(r.Maintainers, ", ")))
		}
		b.WriteString("\n")
	}
	b.WriteString(r.PosteriorText("`"))
	if len(r.Candidates) > 1 {
		b.WriteString("Candidates:\n\n")
		for _, c := range r.Candidates {
			fmt.Fprintf(&b, "- `%s`\n", c)
		}
		b.WriteString("\n")
	}
	all, build, boot, test := r.totals()
	search := r.stepsOf(journal.KindSearch)
	fmt.Fprintf(&b, "Range: %s (%s) .. %s (%s), %d candidates, %d steps; %.1f s in all (build %.1f s, boot %.1f s, test %.1f s).\n\n",
		r.Terms.Old, Short(strings.Join(r.Good, ",")), r.Terms.New, Short(r.Bad), r.NumCands, len(search), all, build, boot, test)
	if r.Strategy == "fast" {
		fmt.Fprintf(&b, "Search over kernels: %d of the %d candidates change no file the builds read, nor the build system, so they build a neighbour's kernel: never built or tested.\n\n",
			r.SameKernel, r.NumCands)
	}
	if t := r.TargetText(); t != "" {
		fmt.Fprintf(&b, "%s\n\n", cell(t))
	}
	if r.GuestRoot != "" {
		fmt.Fprintf(&b, "Guest root: %s\n\n", cell(r.GuestRoot))
	}
	if r.Exec != "" {
		fmt.Fprintf(&b, "Reproducer: %s\n\n", CodeSpan(r.Exec))
	}
	if t := r.TrustText("`"); t != "" {
		b.WriteString("## Can I trust it?\n\n" + t + "\n")
	}
	r.mdSteps(&b)
	if r.Rerun != nil {
		b.WriteString("\n## Re-running a step\n\n")
		seen := map[string]bool{}
		for _, s := range r.Steps {
			if !seen[s.Commit] {
				seen[s.Commit] = true
				fmt.Fprintf(&b, "- `%s`: %s\n", Short(s.Commit), CodeSpan(r.Rerun(s.Commit)))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Group is consecutive steps of one kind on one commit (a Bayesian run
// often comes back to a commit many times in a row), shown as one row.
type Group struct {
	No   string // "3" or "3-7"
	Step journal.Step
}

// Groups folds consecutive steps of one kind on one commit into one row:
// their runs together, their times summed, the verdict of the last.
func (r *Report) Groups() []Group {
	var out []Group
	first := 0
	for i, s := range r.Steps {
		if n := len(out); n > 0 && i > 0 && r.Steps[i-1].Kind == s.Kind && r.Steps[i-1].Commit == s.Commit {
			g := &out[n-1]
			g.No = fmt.Sprintf("%d-%d", first+1, i+1)
			g.Step = merged(g.Step, s)
			continue
		}
		first = i
		out = append(out, Group{No: fmt.Sprint(i + 1), Step: s})
	}
	return out
}

// merged is two steps on one commit as one: runs appended, times summed.
func merged(a, b journal.Step) journal.Step {
	sum := func(x, y *float64) *float64 {
		if x == nil || y == nil {
			return cmp.Or(x, y)
		}
		v := *x + *y
		return &v
	}
	out := b
	out.Attempts = append(slices.Clone(a.Attempts), b.Attempts...)
	out.Duration = a.Duration + b.Duration
	out.Build, out.Boot, out.Test = sum(a.Build, b.Build), sum(a.Boot, b.Boot), sum(a.Test, b.Test)
	good, bad := 0, 0
	for _, at := range out.Attempts {
		switch at.Verdict {
		case "good":
			good++
		case "bad":
			bad++
		}
	}
	out.Reason = fmt.Sprintf("%d runs: %d bad, %d good; last: %s", len(out.Attempts), bad, good, b.Reason)
	out.Flaky = good > 0 && bad > 0
	return out
}

// mdSteps is the Markdown table of steps, each with its evidence.
func (r *Report) mdSteps(b *strings.Builder) {
	b.WriteString("## Steps\n\n| # | kind | commit | subject | verdict | reason | build s | boot s | test s | crash | evidence |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range r.Groups() {
		s := g.Step
		ev := []string{}
		for _, p := range []string{s.Evidence.BuildLog, s.Evidence.ConsoleLog, s.Evidence.TestOutput} {
			if p != "" && !slices.Contains(ev, cell(p)) {
				ev = append(ev, cell(p))
			}
		}
		if s.Evidence.Toolchain != "" {
			ev = append(ev, "toolchain: "+cell(s.Evidence.Toolchain))
		}
		for _, f := range s.Evidence.BuildFixes {
			ev = append(ev, "build fix: "+cell(f))
		}
		fmt.Fprintf(b, "| %s | %s | `%s` | %s | %s | %s | %s | %s | %s | %s | %s |\n", g.No, s.Kind, Short(s.Commit), cell(s.Subject),
			r.Term(s.Verdict), cell(s.Reason), num(s.Build), num(s.Boot), num(s.Test), cell(s.Crash), strings.Join(ev, "<br>"))
	}
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"short": Short,
	"fixes": FixesLine,
	"term":  func(r *Report, v string) string { return r.Term(v) },
	"num":   num,
	"color": verdictColor,
	"add":   func(a, b int) int { return a + b },
	"mul":   func(a, b int) int { return a * b },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>firstbad run {{.R.RunID}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;font-size:90%}code{font-size:95%}</style>
</head><body>
<h1>firstbad run {{.R.RunID}}: {{.R.Outcome}}</h1>
<p>{{.R.Headline}}</p>
{{with .R.CulpritInfo}}{{if or (eq $.R.Outcome "found") (eq $.R.Outcome "suspect")}}<ul>
<li>Commit: <code>{{.ID}}</code></li><li>Subject: {{.Subject}}</li><li>Author: {{.Author}}</li>
<li>Date: {{.Date}}</li><li>Files: {{range $i, $f := .Files}}{{if $i}}, {{end}}{{$f}}{{end}}</li>
<li>Fixes line: <code>{{fixes .ID .Subject}}</code></li>
{{if $.R.Maintainers}}<li>To CC: {{range $i, $m := $.R.Maintainers}}{{if $i}}, {{end}}{{$m}}{{end}}</li>{{end}}</ul>{{end}}{{end}}
{{with .R.PosteriorText ""}}<p style="white-space:pre-line">{{.}}</p>{{end}}
{{with .R.TrustText ""}}<h2>Can I trust it?</h2><p style="white-space:pre-line">{{.}}</p>{{end}}
{{with .R.TargetText}}<p>{{.}}</p>{{end}}
{{with .R.GuestRoot}}<p>Guest root: {{.}}</p>{{end}}
{{if gt (len .R.Candidates) 1}}<p>Candidates:</p><ul>{{range .R.Candidates}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}
<h2>Timeline</h2>
<p>Left: candidates left when the step was chosen (the range narrowing). Right: the step's time.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="860" height="{{add 20 (mul 22 (len .Rows))}}" role="img" aria-label="bisection timeline">
{{range $i, $r := .Rows}}<g transform="translate(0,{{add 10 (mul 22 $i)}})">
<text x="0" y="14" font-size="12" font-family="monospace">{{$r.Label}}</text>
<rect x="160" y="2" width="300" height="16" fill="#eeeeee"/>
<rect x="160" y="2" width="{{$r.RangeW}}" height="16" fill="{{$r.Color}}"><title>{{$r.Title}}</title></rect>
<text x="466" y="14" font-size="11">{{$r.Left}}</text>
<rect x="530" y="2" width="{{$r.DurW}}" height="16" fill="{{$r.Color}}" fill-opacity="0.5"><title>{{$r.Title}}</title></rect>
<text x="{{add 536 $r.DurW}}" y="14" font-size="12">{{$r.Text}}</text>
</g>{{end}}</svg>
<h2>Steps</h2>
<table><tr><th>#</th><th>kind</th><th>commit</th><th>subject</th><th>verdict</th><th>reason</th><th>build s</th><th>boot s</th><th>test s</th><th>crash</th><th>evidence</th></tr>
{{range .R.Groups}}{{$s := .Step}}<tr><td>{{.No}}</td><td>{{$s.Kind}}</td><td><code>{{short $s.Commit}}</code></td><td>{{$s.Subject}}</td>
<td style="color:{{color $s.Verdict}}">{{term $.R $s.Verdict}}</td><td>{{$s.Reason}}</td><td>{{num $s.Build}}</td><td>{{num $s.Boot}}</td><td>{{num $s.Test}}</td><td>{{$s.Crash}}</td>
<td>{{with $s.Evidence.BuildLog}}{{.}}<br>{{end}}{{with $s.Evidence.ConsoleLog}}{{.}}<br>{{end}}{{if ne $s.Evidence.TestOutput $s.Evidence.ConsoleLog}}{{$s.Evidence.TestOutput}}{{end}}{{with $s.Evidence.Toolchain}}<br>toolchain: {{.}}{{end}}{{range $s.Evidence.BuildFixes}}<br>build fix: {{.}}{{end}}</td></tr>
{{end}}</table>
</body></html>
`))

type svgRow struct {
	Label, Color, Title, Text, Left string
	RangeW, DurW                    int
}

// rows lays out the timeline: one row per step.
func (r *Report) rows() []svgRow {
	maxDur := 0.0
	for _, s := range r.Steps {
		maxDur = max(maxDur, s.Duration)
	}
	var rows []svgRow
	for i, s := range r.Steps {
		row := svgRow{Label: Short(s.Commit) + " " + s.Kind, Color: verdictColor(s.Verdict),
			Title: fmt.Sprintf("%s %s: %s (%.1f s)", s.Kind, r.Term(s.Verdict), s.Reason, s.Duration),
			Text:  fmt.Sprintf("%s %.1f s", r.Term(s.Verdict), s.Duration), DurW: 1}
		if maxDur > 0 {
			row.DurW = 1 + int(200*s.Duration/maxDur)
		}
		if i < len(r.Remaining) && r.Remaining[i] > 0 && r.NumCands > 0 {
			row.RangeW = max(2, 300*r.Remaining[i]/r.NumCands)
			row.Left = fmt.Sprintf("%d left", r.Remaining[i])
		}
		rows = append(rows, row)
	}
	return rows
}

func verdictColor(v string) string {
	switch v {
	case "good":
		return "#2e7d32"
	case "bad":
		return "#c62828"
	case "skip":
		return "#9e9e9e"
	}
	return "#ef6c00"
}

// HTML writes a self-contained page (no external assets). Untrusted text
// is cleaned first (control and bidi characters made visible, invalid
// UTF-8 replaced: the page declares utf-8), then escaped by the template.
func (r *Report) HTML(w io.Writer) error {
	c := r.cleaned()
	return htmlTmpl.Execute(w, struct {
		R    *Report
		Rows []svgRow
	}{c, c.rows()})
}

// FixesLine is the kernel's Fixes: tag for a commit.
func FixesLine(id, subject string) string {
	return fmt.Sprintf("Fixes: %s (\"%s\")", Short(id), subject)
}

// cleaned is a copy of the report whose untrusted text (from commits, the
// reproducer, the console) is Clean.
func (r *Report) cleaned() *Report {
	c := *r
	c.Message, c.Target, c.Exec = Clean(r.Message), Clean(r.Target), Clean(r.Exec)
	c.TargetHosts = cleanAll(r.TargetHosts)
	c.GuestRoot = Clean(r.GuestRoot)
	c.Maintainers = cleanAll(r.Maintainers)
	if r.CulpritInfo != nil {
		ci := *r.CulpritInfo
		ci.Subject, ci.Author, ci.Files = Clean(ci.Subject), Clean(ci.Author), cleanAll(ci.Files)
		c.CulpritInfo = &ci
	}
	c.Steps = make([]journal.Step, len(r.Steps))
	for i, s := range r.Steps {
		s.Subject, s.Reason, s.Crash = Clean(s.Subject), Clean(s.Reason), Clean(s.Crash)
		s.Evidence.BuildLog, s.Evidence.ConsoleLog, s.Evidence.TestOutput = Clean(s.Evidence.BuildLog), Clean(s.Evidence.ConsoleLog), Clean(s.Evidence.TestOutput)
		s.Evidence.Toolchain, s.Evidence.BuildFixes = Clean(s.Evidence.Toolchain), cleanAll(s.Evidence.BuildFixes)
		c.Steps[i] = s
	}
	return &c
}

func cleanAll(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = Clean(s)
	}
	return out
}
