package bisectlog

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want *Log
		err  string
	}{
		{
			name: "git's own log",
			in: `git bisect start
# status: waiting for both good and bad commits
# bad: [aaaa] subject
git bisect bad aaaa
# good: [bbbb] subject
git bisect good bbbb
git bisect skip cccc
`,
			want: &Log{TermOld: "good", TermNew: "bad", Entries: []Entry{{"bad", "aaaa"}, {"good", "bbbb"}, {"skip", "cccc"}}},
		},
		{
			name: "start with revs, terms, first-parent and paths",
			in:   `git bisect start '--term-old=fast' '--term-new=slow' '--first-parent' 'v2' 'v1' 'v0' '--' 'drivers/net' 'it'\''s'` + "\ngit bisect slow dddd\n",
			want: &Log{Bad: "v2", Good: []string{"v1", "v0"}, Paths: []string{"drivers/net", "it's"}, FirstParent: true,
				TermOld: "fast", TermNew: "slow", Entries: []Entry{{"slow", "dddd"}}},
		},
		{
			name: "old/new without declaring them",
			in:   "git bisect start\ngit bisect new eeee\ngit bisect old ffff\n",
			want: &Log{TermOld: "old", TermNew: "new", Entries: []Entry{{"new", "eeee"}, {"old", "ffff"}}},
		},
		{name: "not a log", in: "hello\n", err: "line 1: not a git bisect log line"},
		{name: "empty", in: "# only a comment\n", err: "not a bisect log"},
		{name: "unknown command", in: "git bisect frobnicate x\n", err: "unknown bisect command"},
		{name: "verdict without rev", in: "git bisect good\n", err: "without a revision"},
		{name: "unterminated quote", in: "git bisect start 'abc\n", err: "unterminated quote"},
		{name: "unknown option", in: "git bisect start --bogus a b\n", err: "unsupported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	l := &Log{Bad: "b1", Good: []string{"g1", "g2"}, Paths: []string{"a b", "it's"}, FirstParent: true, TermOld: "good", TermNew: "bad"}
	var sb strings.Builder
	err := Format(&sb, l, []Verdict{{"good", "c1", "subject\nwith newline"}, {"skip", "c2", ""}, {"bad", "c3", "x"}}, "first bad commit: [c3] x")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(strings.NewReader(sb.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, sb.String())
	}
	l.Entries = []Entry{{"good", "c1"}, {"skip", "c2"}, {"bad", "c3"}}
	if diff := cmp.Diff(l, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", diff, sb.String())
	}
	if strings.Count(sb.String(), "\n") != 8 {
		t.Errorf("a subject broke out of its comment line:\n%s", sb.String())
	}
}
