// Package bisectlog reads and writes the text of `git bisect log`, the
// format `git bisect replay` accepts.
package bisectlog

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Entry is one verdict line: the term used ("good", "bad", "skip" or a custom
// term) and the revision.
type Entry struct {
	Term string
	Rev  string
}

// Log is a parsed bisect log.
type Log struct {
	Bad         string   // first revision given to `git bisect start`, if any
	Good        []string // the others
	Paths       []string
	FirstParent bool
	TermOld     string // "good" unless the log set other terms
	TermNew     string // "bad" unless the log set other terms
	Entries     []Entry
}

// Parse reads a bisect log. Comments and blank lines are ignored; anything
// else that is not a `git bisect` command is an error naming the line.
func Parse(r io.Reader) (*Log, error) {
	l := &Log{TermOld: "good", TermNew: "bad"}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n, started := 0, false
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rest, ok := strings.CutPrefix(line, "git bisect ")
		if !ok {
			rest, ok = strings.CutPrefix(line, "git-bisect ")
		}
		if !ok {
			return nil, fmt.Errorf("line %d: not a git bisect log line: %q", n, clip(line))
		}
		word, args, _ := strings.Cut(strings.TrimSpace(rest), " ")
		args = strings.TrimSpace(args)
		switch word {
		case "start":
			argv, err := Dequote(args)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			if err := l.start(argv); err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			started = true
		case "terms":
			continue
		default:
			if word != "skip" && word != l.TermOld && word != l.TermNew {
				// git accepts old/new without declaring them.
				if l.TermOld == "good" && (word == "old" || word == "new") {
					l.TermOld, l.TermNew = "old", "new"
				} else {
					return nil, fmt.Errorf("line %d: unknown bisect command %q", n, word)
				}
			}
			revs := strings.Fields(args)
			if len(revs) == 0 {
				return nil, fmt.Errorf("line %d: %q without a revision", n, word)
			}
			for _, rev := range revs {
				l.Entries = append(l.Entries, Entry{Term: word, Rev: rev})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !started && len(l.Entries) == 0 {
		return nil, fmt.Errorf("no git bisect commands found: not a bisect log")
	}
	return l, nil
}

func (l *Log) start(argv []string) error {
	var revs []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--":
			l.Paths = append(l.Paths, argv[i+1:]...)
			i = len(argv)
		case a == "--first-parent":
			l.FirstParent = true
		case a == "--no-checkout":
		case strings.HasPrefix(a, "--term-old=") || strings.HasPrefix(a, "--term-good="):
			l.TermOld = a[strings.Index(a, "=")+1:]
		case strings.HasPrefix(a, "--term-new=") || strings.HasPrefix(a, "--term-bad="):
			l.TermNew = a[strings.Index(a, "=")+1:]
		case strings.HasPrefix(a, "--"):
			return fmt.Errorf("unsupported git bisect start option %q", a)
		default:
			revs = append(revs, a)
		}
	}
	if len(revs) > 0 {
		l.Bad, l.Good = revs[0], revs[1:]
	}
	return nil
}

// Dequote splits a line of shell single-quoted words, as git's sq_dequote.
func Dequote(s string) ([]string, error) {
	var out []string
	for s = strings.TrimLeft(s, " \t"); s != ""; s = strings.TrimLeft(s, " \t") {
		var w strings.Builder
		for s != "" && s[0] != ' ' && s[0] != '\t' {
			switch s[0] {
			case '\'':
				end := strings.IndexByte(s[1:], '\'')
				if end < 0 {
					return nil, fmt.Errorf("unterminated quote in %q", clip(s))
				}
				w.WriteString(s[1 : 1+end])
				s = s[end+2:]
			case '\\':
				if len(s) < 2 {
					return nil, fmt.Errorf("trailing backslash")
				}
				w.WriteByte(s[1])
				s = s[2:]
			default:
				end := strings.IndexAny(s, " \t'\\")
				if end < 0 {
					end = len(s)
				}
				w.WriteString(s[:end])
				s = s[end:]
			}
		}
		out = append(out, w.String())
	}
	return out, nil
}

// Quote is git's sq_quote of one word.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Verdict is one line Format writes.
type Verdict struct {
	Term    string // term_old, term_new or "skip"
	Commit  string
	Subject string
}

// Format writes a log that `git bisect replay` accepts: a start line with
// the endpoints (and terms, first-parent and paths when set), then one line
// per verdict, and the conclusion as a comment.
func Format(w io.Writer, l *Log, verdicts []Verdict, conclusion string) error {
	var b strings.Builder
	b.WriteString("git bisect start")
	if l.TermOld != "good" || l.TermNew != "bad" {
		fmt.Fprintf(&b, " %s %s", Quote("--term-old="+l.TermOld), Quote("--term-new="+l.TermNew))
	}
	if l.FirstParent {
		b.WriteString(" " + Quote("--first-parent"))
	}
	for _, r := range append([]string{l.Bad}, l.Good...) {
		b.WriteString(" " + Quote(r))
	}
	if len(l.Paths) > 0 {
		b.WriteString(" " + Quote("--"))
		for _, p := range l.Paths {
			b.WriteString(" " + Quote(p))
		}
	}
	b.WriteString("\n")
	for _, v := range verdicts {
		fmt.Fprintf(&b, "# %s: [%s] %s\n", v.Term, v.Commit, oneLine(v.Subject))
		fmt.Fprintf(&b, "git bisect %s %s\n", v.Term, v.Commit)
	}
	if conclusion != "" {
		fmt.Fprintf(&b, "# %s\n", oneLine(conclusion))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// oneLine keeps a comment on its line: control characters become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
