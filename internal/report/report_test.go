package report

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
)

func TestClean(t *testing.T) {
	cases := map[string]string{
		"plain":              "plain",
		"tab\there":          "tab\there",
		"\x1b[31mred\x1b[0m": `\x1b[31mred\x1b[0m`,
		"bad \xff utf8":      "bad \uFFFD utf8",
		"line\nbreak\r":      `line\x0abreak\x0d`,
		"c1 \u009b csi":      `c1 \x9b csi`,
	}
	for in, want := range cases {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRenderEscapes(t *testing.T) {
	evil := `<script>alert(1)</script> | $(rm -rf ~) ` + "\x1b[2J"
	r := &Report{RunID: "r", Outcome: journal.OutcomeFound, Culprit: "c", Terms: Terms{"good", "bad"},
		Steps: []journal.Step{{Kind: journal.KindSearch, Commit: "c", Subject: evil, Verdict: "bad", Reason: evil, State: journal.StateDone}}}
	var html, md strings.Builder
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html.String(), "<script>") || !strings.Contains(html.String(), "&lt;script&gt;") {
		t.Error("HTML does not escape subjects")
	}
	if strings.Contains(html.String(), "http") && strings.Contains(html.String(), "src=") {
		t.Error("HTML loads external assets")
	}
	if err := r.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(md.String(), "\x1b") {
		t.Error("Markdown keeps escape sequences")
	}
	if strings.Contains(md.String(), "<script>") {
		t.Error("Markdown passes raw HTML through")
	}
	for _, line := range strings.Split(md.String(), "\n") {
		if strings.HasPrefix(line, "| 1 |") && strings.Count(line, "|")-strings.Count(line, `\|`) != 12 {
			t.Errorf("a pipe in a subject broke the table row: %s", line)
		}
	}
}

// The JSON names, for every step kind, the command that re-runs it.
func TestJSONRerun(t *testing.T) {
	steps := []journal.Step{
		{Kind: journal.KindEndpoint, Commit: "e1", Verdict: "good", State: journal.StateDone},
		{Kind: journal.KindSearch, Commit: "s1", Verdict: "bad", State: journal.StateDone},
		{Kind: journal.KindConfirm, Commit: "s1", Verdict: "bad", State: journal.StateDone},
		{Kind: journal.KindConfirm, Commit: "p1", Verdict: "good", State: journal.StateDone},
	}
	for _, tc := range []struct {
		name  string
		rerun func(string) string
		want  []string // endpoint, step, confirmed culprit, parent
	}{
		{"with a rerun line", func(c string) string { return "firstbad test " + c },
			[]string{"firstbad test e1", "firstbad test s1", "firstbad test s1", "firstbad test p1"}},
		{"without", nil, []string{"", "", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{RunID: "r", Outcome: journal.OutcomeFound, Culprit: "s1", Terms: Terms{"good", "bad"}, Steps: steps, Rerun: tc.rerun}
			var b strings.Builder
			if err := r.JSON(&b); err != nil {
				t.Fatal(err)
			}
			var got jsonReport
			if err := json.Unmarshal([]byte(b.String()), &got); err != nil {
				t.Fatal(err)
			}
			if got.Confirmation == nil || got.Confirmation.Parent == nil || len(got.Endpoints) != 1 || len(got.Steps) != 1 {
				t.Fatalf("steps missing from the JSON: %s", b.String())
			}
			rerun := []string{got.Endpoints[0].Rerun, got.Steps[0].Rerun, got.Confirmation.Culprit.Rerun, got.Confirmation.Parent.Rerun}
			if diff := cmp.Diff(tc.want, rerun); diff != "" {
				t.Errorf("rerun lines (-want +got):\n%s", diff)
			}
		})
	}
}

// Code spans take no escapes: a Fixes: line or a reproducer copied from
// the Markdown must be the exact text (backticks fenced by longer runs).
func TestMarkdownCodeSpans(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`skb->len < 0`, "`skb->len < 0`"},
		{"a `b` c", "``a `b` c``"},
		{"`x`", "`` `x` ``"},
		{`a|b\c`, "`a|b\\c`"},
	} {
		if got := CodeSpan(c.in); got != c.want {
			t.Errorf("CodeSpan(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	r := &Report{RunID: "r", Outcome: journal.OutcomeFound, Culprit: "0123456789abcdef", Terms: Terms{"good", "bad"},
		Exec:        `test $(cat f) -lt 5 && [ "a" \< "b" ]`,
		CulpritInfo: &git.Info{ID: "0123456789abcdef", Subject: "net: fix skb->len < 0 in <foo>_bar"}}
	var md strings.Builder
	if err := r.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"`Fixes: 0123456789ab (\"net: fix skb->len < 0 in <foo>_bar\")`", "`" + r.Exec + "`"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown lacks %s:\n%s", want, md.String())
		}
	}
}

// Raw control bytes, invalid UTF-8 and bidi overrides from commit text never
// reach a human output as themselves.
func TestHostileTextInOutputs(t *testing.T) {
	evil := "esc\x1b[2J bel\x07 cr\r bad\xff rlo\u202eevil\u202c"
	r := &Report{RunID: "r", Outcome: journal.OutcomeFound, Culprit: "c", Terms: Terms{"good", "bad"},
		CulpritInfo: &git.Info{ID: "c", Subject: evil, Author: evil, Files: []string{evil}},
		Steps:       []journal.Step{{Kind: journal.KindSearch, Commit: "c", Subject: evil, Verdict: "bad", Reason: evil, Crash: evil, State: journal.StateDone}}}
	var html, md strings.Builder
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"html": html.String(), "markdown": md.String(), "headline": r.Headline()} {
		if !utf8.ValidString(out) {
			t.Errorf("%s: invalid UTF-8", name)
		}
		for _, bad := range []string{"\x1b", "\x07", "\r", "\u202e", "\u202c"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
	if !strings.Contains(html.String(), `rlo\u202eevil`) {
		t.Error("the bidi override is not shown as an escape in the HTML")
	}
}
