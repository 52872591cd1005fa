package session

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/report"
)

// Flag kinds: what makes a culprit implausible.
const (
	FlagMerge          = "merge"
	FlagDocumentation  = "documentation-only"
	FlagWhitespace     = "whitespace-or-comments-only"
	FlagOtherArch      = "other-architecture-only"
	FlagIdenticalImage = "identical-image"
	FlagRevertBad      = "revert-still-bad"
	FlagNotRead        = "not-read"
)

// culpritFlags says what makes a culprit implausible, each with the next
// step to take. It reads the culprit's diff from repo and the checks'
// steps; the run's end and the report both call it, so they agree.
func culpritFlags(ctx context.Context, repo *git.Repo, p Params, culprit string, steps []journal.Step) []report.Flag {
	var flags []report.Flag
	flaky := "the test may be flaky: run again with --flaky"
	parents, err := repo.Run(ctx, "show", "-s", "--format=%P", "--end-of-options", culprit)
	if err != nil {
		return nil
	}
	ps := strings.Fields(string(parents))
	if len(ps) > 1 {
		flags = append(flags, report.Flag{Kind: FlagMerge, Text: fmt.Sprintf("%s is a merge: the change came with the merged branch, or from the two branches together", short(culprit)),
			Next: fmt.Sprintf("bisect the merged branch alone: firstbad run --good %s --bad %s ... (and see the revert check)", short(ps[0]), short(ps[1]))})
	}
	if info, err := repo.Info(ctx, culprit, true); err == nil && len(ps) > 0 {
		flags = append(flags, fileFlags(info.Files, p, flaky)...)
		if len(ps) == 1 && p.Kernel != nil {
			flags = append(flags, notReadFlag(culprit, info.Files, steps, flaky)...)
		}
		if len(ps) == 1 && cosmetic(ctx, repo, ps[0], culprit) {
			flags = append(flags, report.Flag{Kind: FlagWhitespace, Text: "the culprit changes only whitespace or C comments", Next: flaky})
		}
	}
	flags = append(flags, checkFlags(p, culprit, steps)...)
	return flags
}

// fileFlags flags a diff that cannot change what a run tests: only
// Documentation/, or (a kernel run) only another architecture's arch/.
func fileFlags(files []string, p Params, flaky string) []report.Flag {
	if len(files) == 0 {
		return nil
	}
	// Another architecture is known only for a kernel run (it builds one).
	docs, other := true, p.Kernel != nil
	mine := "arch/x86/"
	if p.Kernel != nil && p.Kernel.Build.Arch != "" {
		mine = "arch/" + kbuild.ArchDir(p.Kernel.Build.Arch) + "/"
	}
	for _, f := range files {
		docs = docs && strings.HasPrefix(f, "Documentation/")
		other = other && strings.HasPrefix(f, "arch/") && !strings.HasPrefix(f, mine)
	}
	switch {
	case docs:
		return []report.Flag{{Kind: FlagDocumentation, Text: "the culprit changes only Documentation/", Next: flaky}}
	case other:
		return []report.Flag{{Kind: FlagOtherArch, Text: fmt.Sprintf("the culprit changes only other architectures than %s", strings.TrimSuffix(mine, "/")), Next: flaky}}
	}
	return nil
}

// cosmetic reports a diff that changes only whitespace, or only comment
// lines of C sources (lines that start a comment or continue one).
func cosmetic(ctx context.Context, repo *git.Repo, parent, c string) bool {
	out, err := repo.Run(ctx, "diff", "-w", "--ignore-blank-lines", "-U0", "--no-color", "--no-ext-diff", parent, c, "--")
	if err != nil {
		return false
	}
	file := ""
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "+++ "):
			file = strings.TrimPrefix(strings.TrimPrefix(l, "+++ "), "b/")
		case strings.HasPrefix(l, "--- "), strings.HasPrefix(l, "diff "), strings.HasPrefix(l, "index "), strings.HasPrefix(l, "@@"):
		case strings.HasPrefix(l, "Binary files"):
			return false
		case strings.HasPrefix(l, "+"), strings.HasPrefix(l, "-"):
			if !commentLine(file, strings.TrimSpace(l[1:])) {
				return false
			}
		}
	}
	return true
}

// commentLine is a C comment line (as kernel style writes them) or blank.
func commentLine(file, l string) bool {
	switch path.Ext(file) {
	case ".c", ".h", ".S":
	default:
		return l == ""
	}
	return l == "" || l == "*" || strings.HasPrefix(l, "* ") || strings.HasPrefix(l, "/*") || strings.HasPrefix(l, "//") || strings.HasPrefix(l, "*/") ||
		(strings.HasPrefix(l, "*") && strings.HasSuffix(l, "*/"))
}

// notReadFlag flags a culprit whose change touches no file its kernel's
// build read (kbuild's .cmd files, kept with the artifact) and none of the
// build system: its kernel is its parent's, whatever the image's bytes (a
// machine's kernels differ in their release alone).
func notReadFlag(culprit string, files []string, steps []journal.Step, flaky string) []report.Flag {
	for _, st := range steps {
		if st.Commit != culprit || st.State != journal.StateDone || st.Evidence.Kernel == "" {
			continue
		}
		read, ok := kbuild.ReadBy(st.Evidence.Kernel, files)
		if !ok || len(read) > 0 {
			return nil
		}
		return []report.Flag{{Kind: FlagNotRead, Next: flaky,
			Text: fmt.Sprintf("the culprit changes %d file(s), none of which its kernel's build read: this change cannot matter to this config", len(files))}}
	}
	return nil
}

// checkFlags are the checks' own doubts: the culprit's kernel the same
// bytes as its parent's, a revert that leaves the tip bad.
func checkFlags(p Params, culprit string, steps []journal.Step) []report.Flag {
	var flags []report.Flag
	for _, st := range steps {
		if st.State == journal.StateDone && report.RevertOf(st, culprit) && st.Commit != culprit && st.Verdict == "bad" {
			flags = append(flags, report.Flag{Kind: FlagRevertBad,
				Text: fmt.Sprintf("with %s reverted the tip is still %s: it is not the whole story (another change causes it too, or it is not the cause)", short(culprit), p.TermNew),
				Next: fmt.Sprintf("look for a second change: firstbad run --good %s --bad %s ... with this revert applied, or --flaky if the test is flaky", short(culprit), short(p.Bad))})
		}
	}
	if report.IdenticalImage(report.ConfirmSteps(steps, culprit)) {
		flags = append(flags, report.Flag{Kind: FlagIdenticalImage,
			Text: "the culprit's kernel image is byte-identical to its parent's: this change cannot matter to this config",
			Next: "the difference is in the test or the machine: run again with --flaky"})
	}
	return flags
}
