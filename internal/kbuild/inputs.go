package kbuild

import (
	"bufio"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// InputsFile, in an artifact, lists the source files its build read, one
// path (relative to the tree) per line, with a tab and the number of
// kbuild's .cmd files that name it: about how many targets make rebuilds
// when it changes (artifacts from before the counts have paths alone).
const InputsFile = "inputs"

// buildInputs lists the files under src that the build in dir read: every
// path into the tree that kbuild's .cmd files name. Those hold each
// object's dependencies as the compiler saw them (fixdep) and the command
// line of every generated file, which names its inputs (the syscall
// tables, the scripts that run).
//
// The paths are absolute, or relative to the build dir where ccache's base
// dir rewrote them (../../wt/0/kernel/sched/autogroup.c): both count.
func buildInputs(dir, src string) (map[string]int, error) {
	src = filepath.Clean(src)
	prefixes := []string{src + "/"}
	if rel, err := filepath.Rel(dir, src); err == nil && rel != "." {
		prefixes = append(prefixes, rel+"/")
	}
	seen := map[string]int{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(d.Name(), ".cmd") || !strings.HasPrefix(d.Name(), ".") {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		named := map[string]bool{}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			for _, field := range strings.Fields(sc.Text()) {
				for _, pre := range prefixes {
					if rest, ok := strings.CutPrefix(field, pre); ok {
						named[path.Clean(strings.TrimRight(rest, `\:;,'")`))] = true
					}
				}
			}
		}
		for p := range named {
			seen[p]++
		}
		return sc.Err()
	})
	return seen, err
}

// formatInputs is the InputsFile's text: sorted paths, each with its count.
func formatInputs(inputs map[string]int) string {
	lines := make([]string, 0, len(inputs))
	for p, n := range inputs {
		lines = append(lines, p+"\t"+strconv.Itoa(n))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// ReadInputs reads what the build of the artifact whose kernel is given
// read: each path with the number of targets that depend on it (1 where
// the artifact does not say). ok is false when the artifact does not list
// its inputs (built before firstbad kept them).
func ReadInputs(kernel string) (inputs map[string]int, ok bool) {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(kernel), InputsFile))
	if err != nil || len(data) == 0 {
		return nil, false
	}
	inputs = map[string]int{}
	for _, l := range strings.Split(string(data), "\n") {
		p, count, _ := strings.Cut(l, "\t")
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			n = 1
		}
		if p != "" {
			inputs[p] = n
		}
	}
	return inputs, true
}

// BuildSystem says whether a tree path can change what is built or how,
// whatever the .cmd files say: Kconfig, Makefiles, scripts, host tools,
// and the top's localversion* files (setlocalversion reads them into the
// release, which no .cmd file names).
func BuildSystem(p string) bool {
	base := path.Base(p)
	return configInput(p, "") || strings.HasPrefix(base, "Makefile") || strings.HasPrefix(base, "Kbuild") ||
		strings.HasPrefix(p, "tools/") || strings.Contains(p, "/tools/") || strings.HasPrefix(p, "localversion")
}

// Reads is what one build, or several, read: the files (Inputs, each with
// the targets that depend on it) and the parts of the tree that are read
// only by some builds — an arch's dir, a tool's under tools/ — where they
// read anything.
type Reads struct {
	Inputs map[string]int
	trees  map[string]bool
}

// NewReads makes Reads of the files builds read.
func NewReads(inputs map[string]int) Reads {
	trees := map[string]bool{}
	for p := range inputs {
		if t := tree(p); t != "" {
			trees[t] = true
			if strings.HasPrefix(t, "tools/") {
				trees["tools"] = true // a tool's build uses tools/'s shared makefiles
			}
		}
	}
	return Reads{Inputs: inputs, trees: trees}
}

// Affects says whether a change to tree path p can change the kernel of
// these builds: a file they read, or a part of the build system they used.
// Not every build-system file is used: make descends into the build's own
// arch/ dir alone and Kconfig sources only its Kconfig; of tools/ a kernel
// build makes objtool and what it needs (and resolve_btfids with BTF), not
// perf or the selftests; Documentation's makefiles make the docs. A build
// that read a file under such a part used that part, all of it.
func (r Reads) Affects(p string) bool {
	if r.Inputs[p] > 0 {
		return true
	}
	if !BuildSystem(p) {
		return false
	}
	switch t := tree(p); t {
	case "":
		return true
	case "Documentation":
		return KconfigFile(p) // sourced by the top Kconfig
	default:
		return r.trees[t]
	}
}

// KconfigFile says whether p is a Kconfig file (Kconfig, Kconfig.debug...).
func KconfigFile(p string) bool { return strings.HasPrefix(path.Base(p), "Kconfig") }

// tree is the part of the tree that p belongs to when only some builds use
// that part (see Affects): arch/<arch>, tools/<tool> (tools/lib/<lib>),
// "tools" for tools/'s shared files and dirs, Documentation; "" for any
// other path.
func tree(p string) string {
	parts := strings.SplitN(p, "/", 4)
	switch {
	case parts[0] == "arch" && len(parts) > 2:
		return "arch/" + parts[1]
	case parts[0] == "tools" && len(parts) > 3 && parts[1] == "lib":
		return "tools/lib/" + parts[2]
	case parts[0] == "tools" && len(parts) > 2 && !slices.Contains([]string{"arch", "build", "include", "lib", "scripts"}, parts[1]):
		return "tools/" + parts[1]
	case parts[0] == "tools":
		return "tools"
	case parts[0] == "Documentation" && len(parts) > 1:
		return "Documentation"
	}
	return ""
}

// ReadBy returns the files, of those a change touches, that can change the
// kernel of the artifact whose kernel is given (Affects): none means the
// change cannot have changed that kernel. ok is false when the artifact
// does not say what its build read (built before firstbad kept that).
func ReadBy(kernel string, changed []string) (read []string, ok bool) {
	inputs, ok := ReadInputs(kernel)
	if !ok {
		return nil, false
	}
	r := NewReads(inputs)
	for _, f := range changed {
		if r.Affects(f) {
			read = append(read, f)
		}
	}
	return read, true
}
