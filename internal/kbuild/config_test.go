package kbuild

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/proc"
)

func TestParseFragment(t *testing.T) {
	cases := []struct {
		name, in string
		want     []Option
		err      string
	}{
		{"all value kinds", "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"a b\"\nCONFIG_E=123\nCONFIG_F=0x10\n# a comment\n\n",
			[]Option{{"CONFIG_A", "y", "f:1"}, {"CONFIG_B", "m", "f:2"}, {"CONFIG_C", "n", "f:3"}, {"CONFIG_D", `"a b"`, "f:4"},
				{"CONFIG_E", "123", "f:5"}, {"CONFIG_F", "0x10", "f:6"}}, ""},
		{"malformed line", "CONFIG_A=y\nFOO=bar\n", nil, "f:2: not a config line"},
		{"bad value", "CONFIG_A=yes\n", nil, "f:1: bad value"},
		{"unquoted string", "CONFIG_A=hello world\n", nil, "f:1: bad value"},
		{"duplicate", "CONFIG_A=y\nCONFIG_A=n\n", nil, "f:2: CONFIG_A is already set on line 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := ParseFragment("f", strings.NewReader(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, f.Options); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestTargetFragmentHasWhatTheGuestNeeds(t *testing.T) {
	f, err := TargetFragment("qemu-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, o := range f.Options {
		have[o.Name] = o.Value
	}
	for _, name := range []string{"64BIT", "PRINTK", "EARLY_PRINTK", "TTY", "SERIAL_8250", "SERIAL_8250_CONSOLE", "BLK_DEV_INITRD",
		"BINFMT_ELF", "BINFMT_SCRIPT", "FUTEX", "EPOLL", "MULTIUSER", "PROC_FS", "SYSFS", "DEVTMPFS", "TMPFS", "PCI", "VIRTIO_MENU",
		"VIRTIO_PCI", "VIRTIO_CONSOLE", "NET", "INET", "UNIX", "NETDEVICES", "VIRTIO_NET"} {
		if have["CONFIG_"+name] != "y" {
			t.Errorf("CONFIG_%s=y missing from the target fragment", name)
		}
	}
	if _, err := TargetFragment("no-such-target"); err == nil {
		t.Error("unknown target accepted")
	}
}

// A fragment that extends another takes its options, less the dropped
// ones, then its own.
func TestTargetFragmentExtends(t *testing.T) {
	names := func(target string) []string {
		f, err := TargetFragment(target)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range f.Options {
			out = append(out, o.String())
		}
		return out
	}
	q35, microvm := names("qemu-x86_64"), names("qemu-microvm-x86_64")
	var want []string
	for _, o := range q35 {
		if o != "CONFIG_PCI=y" && o != "CONFIG_VIRTIO_PCI=y" {
			want = append(want, o)
		}
	}
	want = append(want, "CONFIG_VIRTIO_MMIO=y", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y")
	if diff := cmp.Diff(want, microvm); diff != "" {
		t.Errorf("microvm's fragment (-want +got):\n%s", diff)
	}
	trim := names("trim-qemu-microvm-x86_64")
	if diff := cmp.Diff(append(names("trim-qemu-x86_64"), "# CONFIG_PCI is not set", "# CONFIG_ACPI is not set"), trim); diff != "" {
		t.Errorf("microvm's trim (-want +got):\n%s", diff)
	}
}

func TestMergeApplyVerify(t *testing.T) {
	target := Fragment{Name: "t", Options: []Option{{"CONFIG_A", "y", "t:1"}, {"CONFIG_B", "y", "t:2"}}}
	user := Fragment{Name: "u", Options: []Option{{"CONFIG_B", "n", "u:1"}, {"CONFIG_OLD_NAME", "y", "u:2"}, {"CONFIG_S", `"x"`, "u:3"}}}
	req := Merge(target, user)
	if diff := cmp.Diff([]Option{{"CONFIG_A", "y", "t:1"}, {"CONFIG_B", "n", "u:1"}, {"CONFIG_OLD_NAME", "y", "u:2"}, {"CONFIG_S", `"x"`, "u:3"}}, req); diff != "" {
		t.Errorf("Merge (-want +got):\n%s", diff)
	}
	applied := Apply("CONFIG_A=m\n# CONFIG_B is not set\nCONFIG_KEEP=y\n", req)
	want := "CONFIG_KEEP=y\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_OLD_NAME=y\nCONFIG_S=\"x\"\n"
	if applied != want {
		t.Errorf("Apply = %q, want %q", applied, want)
	}
	// After olddefconfig: the option was renamed (gone), A was demoted
	// by a missing dependency, the string holds, B is absent (fine: n).
	final, _ := Values(strings.NewReader("CONFIG_NEW_NAME=y\n# CONFIG_A is not set\nCONFIG_S=\"x\"\n"))
	got := Verify(final, req)
	var names []string
	for _, m := range got {
		names = append(names, m.Option.Name+"="+m.Got)
	}
	if diff := cmp.Diff([]string{"CONFIG_A=n", "CONFIG_OLD_NAME="}, names); diff != "" {
		t.Errorf("Verify (-want +got):\n%s", diff)
	}
	if !strings.Contains(got[1].String(), "does not exist at this commit, was renamed") {
		t.Errorf("message for a vanished option: %s", got[1])
	}
}

func TestDiagnose(t *testing.T) {
	cases := []struct {
		name   string
		log    string
		res    proc.Result
		infra  bool
		reason string
	}{
		{"compile error", "  CC      kernel/fork.o\nkernel/sched/core.c:123:5: error: 'foo' undeclared (first use in this function)\nmake[3]: *** [scripts/Makefile.build:250: kernel/sched/core.o] Error 1\n",
			proc.Result{ExitCode: 2}, false, "kernel/sched/core.c:123: error: 'foo' undeclared"},
		{"fatal missing header", "drivers/x.c:4:10: fatal error: linux/nope.h: No such file or directory\n", proc.Result{ExitCode: 2}, false, "drivers/x.c:4: error: linux/nope.h"},
		{"link error", "  LD      vmlinux.o\nld: kernel/fork.o: in function `x':\nfork.c:(.text+0x1): undefined reference to `y'\nmake: *** [Makefile:1] Error 1\n",
			proc.Result{ExitCode: 2}, false, "link error"},
		{"oom killed", "gcc: fatal error: Killed signal terminated program cc1\n", proc.Result{ExitCode: 2}, true, "out of memory"},
		{"exit 137", "", proc.Result{ExitCode: 137}, true, "killed"},
		{"disk full", "kernel/fork.o: No space left on device\n", proc.Result{ExitCode: 2}, true, "disk full"},
		{"no compiler", "/bin/sh: 1: gcc: not found\n", proc.Result{ExitCode: 2}, true, "missing"},
		{"timeout", "", proc.Result{TimedOut: true, ExitCode: 137}, true, "timeout"},
		{"only make error", "make: *** [Makefile:1234: vmlinux] Error 2\n", proc.Result{ExitCode: 2}, false, "make: ***"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Diagnose([]byte(c.log), c.res)
			if d.Infra != c.infra || !strings.Contains(d.Reason, c.reason) {
				t.Errorf("Diagnose = %+v, want infra=%v reason containing %q", d, c.infra, c.reason)
			}
		})
	}
}
