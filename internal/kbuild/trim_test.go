package kbuild

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/toolchain"
)

// kconfigTree checks out the files config targets read (Kconfig files,
// Makefiles, scripts/, arch/x86, include/, kernel/configs/) of the test
// history's tip: a real tree for make defconfig, tinyconfig and
// localmodconfig, without the 1 GiB of the rest. It skips when the test history is not there (test.sh makes it).
func kconfigTree(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("real make in a kernel tree")
	}
	root := os.Getenv("FIRSTBAD_TEST_ROOT")
	if root == "" {
		root = "/var/tmp/firstbad-test"
	}
	repo := filepath.Join(root, "linux")
	names, err := exec.Command("git", "-C", repo, "ls-tree", "-r", "--name-only", "tip").Output()
	if err != nil {
		t.Skipf("no test history at %s (./test.sh makes it): %v", repo, err)
	}
	keep := regexp.MustCompile(`(^|/)(Kconfig|Makefile|Kbuild)[^/]*$|^(scripts|arch/x86|include|kernel/configs)/`)
	var list []string
	for _, n := range strings.Split(string(names), "\n") {
		if keep.MatchString(n) {
			list = append(list, n)
		}
	}
	dir := t.TempDir()
	idx := filepath.Join(dir, "index")
	for _, args := range [][]string{{"read-tree", "tip"}, {"checkout-index", "--prefix=" + dir + "/src/", "--stdin"}} {
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_INDEX_FILE="+idx)
		cmd.Stdin = strings.NewReader(strings.Join(list, "\n"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return filepath.Join(dir, "src")
}

// --trim-modules keeps the base's modules that lsmod lists and turns off
// the others (make localmodconfig), before the required options apply.
// localmodconfig itself adds IKCONFIG as a module (so the trimmed kernel
// still carries its config).
func TestTrimModules(t *testing.T) {
	src := kconfigTree(t)
	header := "Module                  Size  Used by\n"
	tests := []struct {
		name, lsmod string
		apply       []Option
		want        []string
	}{
		{"nothing loaded", header, nil, []string{"CONFIG_IKCONFIG"}},
		{"efivarfs and a netfilter module loaded", header + "efivarfs 24576 1\nxt_MASQUERADE 16384 0\nnf_nat 57344 2 xt_MASQUERADE\n", nil,
			[]string{"CONFIG_EFIVAR_FS", "CONFIG_IKCONFIG", "CONFIG_NETFILTER_XT_TARGET_MASQUERADE"}},
		{"a required module stays", header, []Option{{Name: "CONFIG_BLK_DEV_LOOP", Value: "m"}}, []string{"CONFIG_BLK_DEV_LOOP", "CONFIG_IKCONFIG"}},
	}
	// The base: x86_64's defconfig, with its 13 modules.
	base := filepath.Join(t.TempDir(), "base.config")
	if err := os.WriteFile(base, assemble(t, src, Options{Base: "defconfig"}, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lsmod := filepath.Join(t.TempDir(), "lsmod")
			if err := os.WriteFile(lsmod, []byte(tt.lsmod), 0o644); err != nil {
				t.Fatal(err)
			}
			final := assemble(t, src, Options{Base: base, TrimModules: lsmod}, tt.apply)
			got := []string{}
			for _, m := range regexp.MustCompile(`(?m)^(CONFIG_\w+)=m$`).FindAllStringSubmatch(string(final), -1) {
				got = append(got, m[1])
			}
			sort.Strings(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("modules left (-want +got):\n%s", diff)
			}
		})
	}
}

// assemble is a config made as a build makes it, checking that a trim
// says what it did.
func assemble(t *testing.T, src string, o Options, apply []Option) []byte {
	t.Helper()
	return assembleAfter(t, src, o, apply, nil)
}

// assembleAfter is assemble in a build dir whose last build's .config was
// prior (none if nil).
func assembleAfter(t *testing.T, src string, o Options, apply []Option, prior []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	j := &buildJob{b: &Builder{CacheDir: dir}, o: o.withDefaults(), req: Request{Src: src, LogDir: dir}, tc: toolchain.Host(), dir: filepath.Join(dir, "build")}
	if err := os.MkdirAll(j.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if prior != nil {
		if err := os.WriteFile(filepath.Join(j.dir, ".config"), prior, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.openLog(); err != nil {
		t.Fatal(err)
	}
	defer j.log.Close()
	final, res, err := j.assemble(context.Background(), apply)
	log, _ := os.ReadFile(j.res.Log)
	if err != nil || res != nil {
		t.Fatalf("assemble: %v %+v\n%s", err, res, log)
	}
	if o.TrimModules != "" && !strings.Contains(string(log), "firstbad: --trim-modules: 13 modules in the base") {
		t.Errorf("the log does not say what the trim did:\n%s", log)
	}
	return final
}

// --machine microvm: q35's required options but PCI's, plus virtio-mmio;
// on a tinyconfig base the trim turns PCI and ACPI off, which olddefconfig
// keeps, and every required option holds.
func TestMicrovmConfig(t *testing.T) {
	src := kconfigTree(t)
	for _, tt := range []struct {
		machine   string
		want, not []string
	}{
		{"q35", []string{"CONFIG_PCI", "CONFIG_VIRTIO_PCI", "CONFIG_ACPI"}, []string{"CONFIG_VIRTIO_MMIO"}},
		{"microvm", []string{"CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES", "CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_NET"},
			[]string{"CONFIG_PCI", "CONFIG_VIRTIO_PCI", "CONFIG_ACPI"}},
	} {
		t.Run(tt.machine, func(t *testing.T) {
			o := Options{Target: QEMUTarget(tt.machine)}
			required, err := Required(o)
			if err != nil {
				t.Fatal(err)
			}
			final := assemble(t, src, o, Merge(Fragment{Options: Trim(o)}, Fragment{Options: required}))
			vals, err := Values(strings.NewReader(string(final)))
			if err != nil {
				t.Fatal(err)
			}
			if m := Verify(vals, required); len(m) != 0 {
				t.Errorf("required options that do not hold: %v", m)
			}
			for _, n := range tt.want {
				if vals[n] != "y" {
					t.Errorf("%s=%q, want y", n, vals[n])
				}
			}
			for _, n := range tt.not {
				if v := vals[n]; v != "" && v != "n" {
					t.Errorf("%s=%q, want it off", n, v)
				}
			}
		})
	}
}

// The tinyconfig base is the same whatever config the build dir built
// last: 6.1's tinyconfig merges tiny.config into a hard-coded .config, and
// made in the build dir it drifted with each build (the second build of a
// run then rebuilt everything). It is what a new build dir always made.
func TestTinyconfigBase(t *testing.T) {
	src := kconfigTree(t)
	want := assembleAfter(t, src, Options{}, nil, nil)
	other := assemble(t, src, Options{Base: "defconfig"}, nil)
	for _, c := range []struct {
		name  string
		prior []byte
	}{
		{"after a build of defconfig", other},
		{"after a build of itself", want},
	} {
		if got := assembleAfter(t, src, Options{}, nil, c.prior); !bytes.Equal(got, want) {
			t.Errorf("%s: another base (%d options set, %d in a new build dir)", c.name, bytes.Count(got, []byte("=y\n")), bytes.Count(want, []byte("=y\n")))
		}
	}
}
