package session

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/gittest"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/pipeline"
)

// Each kind of implausible culprit, on a real history; a plain code change
// is not flagged.
func TestCulpritFlags(t *testing.T) {
	var b gittest.Builder
	base := b.CommitFiles("base", map[string]string{
		"kernel/sched.c":          "int x;\n/*\n * old comment\n */\nint y;\n",
		"Documentation/sched.rst": "old\n",
		"arch/arm64/Kconfig":      "old\n",
		"arch/x86/Kconfig":        "old\n",
		"README":                  "old\n",
	})
	code := b.CommitFiles("code", map[string]string{"kernel/sched.c": "int x = 1;\n/*\n * old comment\n */\nint y;\n"}, base)
	docs := b.CommitFiles("docs", map[string]string{"Documentation/sched.rst": "new\n"}, code)
	space := b.CommitFiles("space", map[string]string{"kernel/sched.c": "int  x = 1;\n\n/*\n * old comment\n */\nint y;\n"}, docs)
	comment := b.CommitFiles("comment", map[string]string{"kernel/sched.c": "int  x = 1;\n\n/*\n * new comment\n */\nint y;\n"}, space)
	arm := b.CommitFiles("arm", map[string]string{"arch/arm64/Kconfig": "new\n"}, comment)
	x86 := b.CommitFiles("x86", map[string]string{"arch/x86/Kconfig": "new\n"}, arm)
	side := b.CommitFiles("side", map[string]string{"README": "side\n"}, base)
	merge := b.CommitFiles("merge", nil, x86, side)
	repo := b.Write(t)
	r := &git.Repo{Dir: repo.Dir}
	kernel := Params{Kernel: &pipeline.KernelConfig{}, TermNew: "bad"}
	exec := Params{TermNew: "bad"}
	for _, c := range []struct {
		name   string
		commit int
		p      Params
		inputs string // what the culprit's kernel's build read ("": not kept)
		want   []string
	}{
		{"a code change", code, kernel, "", nil},
		{"a code change the build read", code, kernel, "init/main.c\nkernel/sched.c\n", nil},
		{"a code change the build did not read", code, kernel, "init/main.c\n", []string{FlagNotRead}},
		{"documentation only", docs, exec, "", []string{FlagDocumentation}},
		{"whitespace only", space, exec, "", []string{FlagWhitespace}},
		{"a comment only", comment, exec, "", []string{FlagWhitespace}},
		{"another architecture, kernel run", arm, kernel, "", []string{FlagOtherArch}},
		{"another architecture, exec run: no arch known", arm, exec, "", nil},
		{"this architecture", x86, kernel, "", nil},
		{"this architecture's Kconfig: the build system, read or not", x86, kernel, "init/main.c\narch/x86/kernel/head_64.S\n", nil},
		{"a merge", merge, exec, "", []string{FlagMerge}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var steps []journal.Step
			if c.inputs != "" {
				kernel := filepath.Join(t.TempDir(), "bzImage")
				if err := os.WriteFile(filepath.Join(filepath.Dir(kernel), kbuild.InputsFile), []byte(c.inputs), 0o644); err != nil {
					t.Fatal(err)
				}
				steps = []journal.Step{{Kind: journal.KindConfirm, Commit: repo.SHAs[c.commit], State: journal.StateDone, Verdict: "bad",
					Evidence: journal.Evidence{Kernel: kernel}}}
			}
			var kinds []string
			for _, f := range culpritFlags(context.Background(), r, c.p, repo.SHAs[c.commit], steps) {
				kinds = append(kinds, f.Kind)
				if f.Text == "" || f.Next == "" {
					t.Errorf("flag %s without text or next step: %+v", f.Kind, f)
				}
			}
			if diff := cmp.Diff(c.want, kinds); diff != "" {
				t.Errorf("flags (-want +got):\n%s", diff)
			}
		})
	}
	// The checks' own flags: a revert that leaves the tip bad.
	st := []journal.Step{{Kind: journal.KindRevert, Commit: "r", Subject: "Revert " + short(repo.SHAs[code]) + ` "code"`, State: journal.StateDone, Verdict: "bad"}}
	var kinds []string
	for _, f := range culpritFlags(context.Background(), r, kernel, repo.SHAs[code], st) {
		kinds = append(kinds, f.Kind)
	}
	if diff := cmp.Diff([]string{FlagRevertBad}, kinds); diff != "" {
		t.Errorf("revert still bad (-want +got):\n%s", diff)
	}
}
