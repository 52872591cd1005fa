package toolchain

import (
	"embed"
	"regexp"
)

// A build failure can say more than "this commit does not build": that the
// toolchain belongs to another era than the kernel (a skip on every commit
// is then the toolchain's fault, not the commits'), or that an upstream fix
// the old tree lacks would let it build.

// Mismatch is a failure that says the toolchain is newer than the kernel.
type Mismatch struct {
	Re  *regexp.Regexp
	Why string
}

// Mismatches are the known toolchain-era signatures, each with what it
// means. They come from the failures seen building old trees with new
// toolchains (bench/toolchain-bench.sh records them) and from the story's.
var Mismatches = []Mismatch{
	{regexp.MustCompile(`Unsupported relocation type: R_X86_64_PLT32`), "binutils 2.31 or newer emits R_X86_64_PLT32, which kernels before 4.16 cannot relocate"},
	{regexp.MustCompile(`#error New address family defined, please update secclass_map`), "the C library's headers know address families this kernel's SELinux class map does not"},
	{regexp.MustCompile("multiple definition of `yylloc'"), "gcc 10 or newer defaults to -fno-common, which the dtc lexer of kernels before 5.7 breaks"},
	{regexp.MustCompile(`\[-Werror=use-after-free\]`), "gcc 12 or newer flags libsubcmd's realloc(ptr, 0) in kernels before 5.17 (and 5.10.y before its backport)"},
	{regexp.MustCompile(`\[-Werror=(implicit-function-declaration|implicit-int|incompatible-pointer-types|int-conversion)\]|error: implicit declaration of function`), "gcc 14 or newer makes old C (implicit declarations, loose pointer types) an error"},
	{regexp.MustCompile(`\[-Werror=(array-bounds|stringop-overflow|dangling-pointer|maybe-uninitialized|address|format-truncation)=?\d?\]`), "a newer gcc's stricter warnings, which this tree builds with -Werror"},
	{regexp.MustCompile(`objtool: .*(unsupported instruction|unreachable instruction|return with modified stack frame|call without frame pointer save)`), "a newer compiler emits code this kernel's objtool does not understand"},
}

// MatchMismatch is the first toolchain-era signature in a build log, if any.
func MatchMismatch(log string) (Mismatch, string, bool) {
	for _, m := range Mismatches {
		if loc := m.Re.FindStringIndex(log); loc != nil {
			return m, lineAt(log, loc[0]), true
		}
	}
	return Mismatch{}, "", false
}

// lineAt is the line of text holding offset i.
func lineAt(text string, i int) string {
	start, end := i, i
	for start > 0 && text[start-1] != '\n' {
		start--
	}
	for end < len(text) && text[end] != '\n' {
		end++
	}
	return text[start:end]
}

//go:embed fixes/*.patch
var fixFS embed.FS

// Fix is an upstream commit that cures a build failure of older trees.
type Fix struct {
	Subject string // the upstream subject
	Commit  string // the upstream commit
	Re      *regexp.Regexp
	Patch   string // fixes/NAME.patch: the change, as `git apply` takes it
}

// Fixes are the build fixes firstbad applies to a tree that lacks them
// when its build fails with their signature (--no-build-fixes: never).
var Fixes = []Fix{
	{"libsubcmd: Fix use-after-free for realloc(..., 0)", "52a9dab6d892763b2a8334a568bd4e2c1a6fde66",
		regexp.MustCompile(`subcmd-util\.h:\d+:\d+: error: pointer (.* )?may be used after .realloc. \[-Werror=use-after-free\]`),
		"libsubcmd-realloc.patch"},
}

// PatchText is a fix's patch.
func (f Fix) PatchText() ([]byte, error) { return fixFS.ReadFile("fixes/" + f.Patch) }

// MatchFixes are the fixes whose signature is in a build log.
func MatchFixes(log string) []Fix {
	var out []Fix
	for _, f := range Fixes {
		if f.Re.MatchString(log) {
			out = append(out, f)
		}
	}
	return out
}
