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
	for _, c := range []struct {
		in   string
		want string // the target's Name; "" for the local QEMU
		err  string
	}{
		{in: "", want: ""},
		{in: "qemu", want: ""},
		{in: "ssh://vmhost", want: "ssh://vmhost"},
		{in: "libvirt:///bisect-vm", want: "libvirt:///bisect-vm"},
		{in: "libvirt://root@vmhost:2222/prod?uri=qemu:///session&dir=/srv/fb", want: "libvirt://root@vmhost:2222/prod"},
		{in: "QEMU", err: "want qemu (local), ssh://"},
		{in: "ssh:/vmhost", err: "want qemu (local), ssh://"},
		{in: "libvirt://vmhost", err: "want libvirt:///DOMAIN"},
		{in: "libvirt:///a/b", err: "want libvirt:///DOMAIN"},
		{in: "libvirt:///dom?disk=x", err: `unknown parameter "disk"`},
	} {
		r, err := ParseTarget(c.in, Options{})
		got := ""
		if r != nil {
			got = r.Name()
		}
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one with %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %q %v, want %q", c.in, got, err, c.want)
		}
	}
	l, _ := ParseLibvirtTarget("libvirt://root@vmhost:2222/prod?uri=qemu:///session&dir=/srv/fb")
	if diff := cmp.Diff([]string{"prod", "qemu:///session", "/srv/fb"}, []string{l.Domain, l.URI, l.Dir}); diff != "" {
		t.Errorf("libvirt target (-want +got):\n%s", diff)
	}
}
