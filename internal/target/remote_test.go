package target

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/remote"
)

func TestParseSSHTarget(t *testing.T) {
	cases := []struct {
		in                string
		dest              remote.Dest
		dir, qemu, errHas string
	}{
		{in: "ssh://vmhost", dest: remote.Dest{Host: "vmhost"}},
		{in: "ssh://root@10.0.0.7:2222", dest: remote.Dest{User: "root", Host: "10.0.0.7", Port: 2222}},
		{in: "ssh://h?dir=/srv/fb&qemu=/opt/qemu/bin/qemu-system-x86_64", dest: remote.Dest{Host: "h"}, dir: "/srv/fb", qemu: "/opt/qemu/bin/qemu-system-x86_64"},
		{in: "ssh:///nohost", errHas: "want ssh://"},
		{in: "libvirt://h/dom", errHas: "want ssh://"},
		{in: "ssh://h/path", errHas: "want ssh://"},
		{in: "ssh://h?colour=blue", errHas: `unknown parameter "colour"`},
		{in: "ssh://h:99999", errHas: "bad port"},
	}
	for _, c := range cases {
		r, err := ParseSSHTarget(c.in)
		if c.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("%q: err %v, want one containing %q", c.in, err, c.errHas)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if diff := cmp.Diff(c.dest, r.Dest); diff != "" || r.Dir != c.dir || r.Binary != c.qemu {
			t.Errorf("%q: dir %q qemu %q, dest (-want +got):\n%s", c.in, r.Dir, r.Binary, diff)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, local := range []string{"", "qemu"} {
		if r, err := ParseTarget(local); r != nil || err != nil {
			t.Errorf("%q: %v %v, want the local QEMU", local, r, err)
		}
	}
	if r, err := ParseTarget("ssh://vmhost"); err != nil || r == nil || r.Dest.Host != "vmhost" {
		t.Errorf("ssh://vmhost: %v %v", r, err)
	}
	for _, bad := range []string{"libvirt://h/dom", "QEMU", "ssh:/vmhost"} {
		if _, err := ParseTarget(bad); err == nil || !strings.Contains(err.Error(), "want qemu (local) or ssh://") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
