package remote

import (
	"os/exec"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDest(t *testing.T) {
	cases := []struct {
		in   string
		want Dest
		err  bool
	}{
		{"host", Dest{Host: "host"}, false},
		{"alice@host", Dest{User: "alice", Host: "host"}, false},
		{"alice@host:2222", Dest{User: "alice", Host: "host", Port: 2222}, false},
		{"[::1]:22", Dest{Host: "::1", Port: 22}, false},
		{"host:0", Dest{}, true},
		{"host:ssh", Dest{}, true},
		{"", Dest{}, true},
		{"a b", Dest{}, true},
	}
	for _, c := range cases {
		got, err := ParseDest(c.in)
		if (err != nil) != c.err {
			t.Errorf("%q: err %v, want error %v", c.in, err, c.err)
			continue
		}
		if !c.err {
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("%q (-want +got):\n%s", c.in, diff)
			}
		}
	}
}

// Command's quoting survives a real shell: every argument comes back as
// it went in, whatever it holds.
func TestCommandQuoting(t *testing.T) {
	args := []string{"plain", "with space", "it's", `"double"`, "$(rm -rf ~)", "`x`", "a\nb", "", "semi;colon", "*"}
	cmd := exec.Command("sh", "-c", "printf '%s\\0' "+Command(args...))
	got, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var back []string
	start := 0
	for i, b := range got {
		if b == 0 {
			back = append(back, string(got[start:i]))
			start = i + 1
		}
	}
	if diff := cmp.Diff(args, back); diff != "" {
		t.Errorf("arguments through sh (-want +got):\n%s", diff)
	}
}
