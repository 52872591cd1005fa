// Package kbuild assembles and verifies kernel configs, builds kernels
// incrementally out of tree with ccache, diagnoses failed builds, and keeps
// built kernels in a content-addressed cache.
package kbuild

import (
	"bufio"
	"embed"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

//go:embed fragments/*.config
var fragmentFS embed.FS

// Option is one required config option. Value is as .config writes it:
// "y", "m", "n" (for "# CONFIG_X is not set"), a quoted string or a number.
type Option struct {
	Name  string // with the CONFIG_ prefix
	Value string
	Where string // fragment:line, for messages
}

func (o Option) String() string {
	if o.Value == "n" {
		return "# " + o.Name + " is not set"
	}
	return o.Name + "=" + o.Value
}

// Fragment is a named list of required options.
type Fragment struct {
	Name    string
	Options []Option
}

var (
	setRe   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	unsetRe = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
	valueRe = regexp.MustCompile(`^(y|m|n|-?[0-9]+|0x[0-9a-fA-F]+|"([^"\\]|\\.)*")$`)
)

// ParseFragment reads a config fragment: CONFIG_X=y|m|n|number|"string" and
// "# CONFIG_X is not set" lines; other comments and blank lines are
// ignored. Anything else is an error with its line number.
func ParseFragment(name string, r io.Reader) (Fragment, error) {
	f := Fragment{Name: name}
	sc := bufio.NewScanner(r)
	n := 0
	seen := map[string]int{}
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		var o Option
		if m := unsetRe.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: "n"}
		} else if line == "" || strings.HasPrefix(line, "#") {
			continue
		} else if m := setRe.FindStringSubmatch(line); m != nil {
			if !valueRe.MatchString(m[2]) {
				return f, fmt.Errorf("%s:%d: bad value %q for %s (use y, m, n, a number or a \"quoted string\")", name, n, m[2], m[1])
			}
			o = Option{Name: m[1], Value: m[2]}
		} else {
			return f, fmt.Errorf("%s:%d: not a config line: %q (expected CONFIG_X=value or # CONFIG_X is not set)", name, n, line)
		}
		o.Where = fmt.Sprintf("%s:%d", name, n)
		if prev, dup := seen[o.Name]; dup {
			return f, fmt.Errorf("%s:%d: %s is already set on line %d", name, n, o.Name, prev)
		}
		seen[o.Name] = n
		f.Options = append(f.Options, o)
	}
	return f, sc.Err()
}

// ReadFragment parses a fragment file.
func ReadFragment(path string) (Fragment, error) {
	f, err := os.Open(path)
	if err != nil {
		return Fragment{}, fmt.Errorf("config fragment: %w", err)
	}
	defer f.Close()
	return ParseFragment(path, f)
}

// TargetFragment is firstbad's own required fragment for a target. A
// fragment file may build on another: "#extends NAME" takes NAME's options
// first and "#drop CONFIG_A ..." removes some of them (microvm is q35
// without PCI), then the file's own options follow.
func TargetFragment(target string) (Fragment, error) {
	data, err := fragmentFS.ReadFile("fragments/" + target + ".config")
	if err != nil {
		return Fragment{}, fmt.Errorf("no built-in config fragment for target %q", target)
	}
	own, err := ParseFragment("firstbad:"+target, strings.NewReader(string(data)))
	if err != nil {
		return own, err
	}
	var base Fragment
	drop := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "#extends "); ok {
			if base, err = TargetFragment(strings.TrimSpace(name)); err != nil {
				return base, err
			}
		}
		if names, ok := strings.CutPrefix(line, "#drop "); ok {
			for _, n := range strings.Fields(names) {
				drop[n] = true
			}
		}
	}
	out := Fragment{Name: own.Name}
	for _, o := range Merge(base, own) {
		if !drop[o.Name] {
			out.Options = append(out.Options, o)
		}
	}
	return out, nil
}

// Merge combines fragments in order; a later fragment overrides an earlier
// one's value for the same option.
func Merge(frags ...Fragment) []Option {
	idx := map[string]int{}
	var out []Option
	for _, f := range frags {
		for _, o := range f.Options {
			if i, ok := idx[o.Name]; ok {
				out[i] = o
				continue
			}
			idx[o.Name] = len(out)
			out = append(out, o)
		}
	}
	return out
}

// Values reads a .config into option -> value ("n" for "is not set").
func Values(r io.Reader) (map[string]string, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := setRe.FindStringSubmatch(line); m != nil {
			vals[m[1]] = m[2]
		} else if m := unsetRe.FindStringSubmatch(line); m != nil {
			vals[m[1]] = "n"
		}
	}
	return vals, sc.Err()
}

// Apply rewrites a .config's text with the options set: existing lines for
// them are dropped and the options appended (Kconfig then resolves them).
func Apply(config string, opts []Option) string {
	set := map[string]bool{}
	for _, o := range opts {
		set[o.Name] = true
	}
	var b strings.Builder
	for _, line := range strings.Split(config, "\n") {
		name := ""
		if m := setRe.FindStringSubmatch(line); m != nil {
			name = m[1]
		} else if m := unsetRe.FindStringSubmatch(line); m != nil {
			name = m[1]
		}
		if set[name] || line == "" {
			continue
		}
		b.WriteString(line + "\n")
	}
	for _, o := range opts {
		b.WriteString(o.String() + "\n")
	}
	return b.String()
}

// Mismatch is a required option the final config does not hold.
type Mismatch struct {
	Option Option
	Got    string // "" when the option is absent from .config
}

func (m Mismatch) String() string {
	switch m.Got {
	case "":
		return fmt.Sprintf("%s (wanted %s, from %s) is not in the final config: the option does not exist at this commit, was renamed, or its dependencies are missing", m.Option.Name, m.Option.Value, m.Option.Where)
	case "n":
		return fmt.Sprintf("%s (wanted %s, from %s) is not set after olddefconfig: a dependency is missing at this commit", m.Option.Name, m.Option.Value, m.Option.Where)
	}
	return fmt.Sprintf("%s (wanted %s, from %s) is %s after olddefconfig", m.Option.Name, m.Option.Value, m.Option.Where, m.Got)
}

// Verify lists the required options that the final config does not hold.
// An option required to be "n" holds when it is absent.
func Verify(final map[string]string, required []Option) []Mismatch {
	var out []Mismatch
	for _, o := range required {
		got, ok := final[o.Name]
		if o.Value == "n" && (!ok || got == "n") {
			continue
		}
		if got != o.Value {
			out = append(out, Mismatch{Option: o, Got: got})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Option.Name < out[j].Option.Name })
	return out
}
