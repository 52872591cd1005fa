package distcc

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseHosts(t *testing.T) {
	for _, c := range []struct {
		list string
		want []Node
		err  string
	}{
		{list: "localhost node1 node2:4000/16,lzo", want: []Node{
			{Host: "localhost", Slots: 2, Local: true}, {Host: "node1", Port: 3632, Slots: 4}, {Host: "node2", Port: 4000, Slots: 16}}},
		{list: "--randomize localhost/1 @build1/8 me@build2/6:/usr/bin/distccd +zeroconf", want: []Node{
			{Host: "localhost", Slots: 1, Local: true}, {Host: "build1", Slots: 8, SSH: true}, {Host: "build2", Slots: 6, SSH: true}}},
		{list: "10.0.0.7/3", want: []Node{{Host: "10.0.0.7", Port: 3632, Slots: 3}}},
		{list: "node1/x", err: "positive number"},
		{list: "node1:99999", err: "bad port"},
		{list: "--randomize", err: "names no host"},
	} {
		got, err := ParseHosts(c.list)
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("ParseHosts(%q): %v, want error %q", c.list, err, c.err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ParseHosts(%q) (-want +got):\n%s", c.list, diff)
		}
	}
}

func TestParse(t *testing.T) {
	t.Setenv("DISTCC_HOSTS", "")
	t.Setenv("DISTCC_DIR", t.TempDir())
	systemHosts = "/nonexistent"
	for _, c := range []struct{ in, err string }{
		{in: "distcc:node1/8 node2/8"},
		{in: "icecc:sched", err: "give distcc or distcc:HOSTS"},
		{in: "distcc", err: "no host list"},
		{in: "distcc:node/0", err: "positive number"},
	} {
		_, err := Parse(c.in)
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Parse(%q): %v, want error %q", c.in, err, c.err)
		}
	}
	t.Setenv("DISTCC_HOSTS", "a/2 b/3")
	c, err := Parse("distcc")
	if err != nil {
		t.Fatal(err)
	}
	if env := strings.Join(c.Env("/s"), " "); !strings.Contains(env, "DISTCC_HOSTS=a/2 b/3") || !strings.Contains(env, "CCACHE_PREFIX=distcc") {
		t.Errorf("Env: %s", env)
	}
}

// Probe: a listening port is up, a closed one down; -j counts the slots
// of the nodes up plus the local CPUs.
func TestProbeAndJobs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	port := l.Addr().(*net.TCPAddr).Port
	c := &Cluster{Hosts: "localhost 127.0.0.1:" + strconv.Itoa(port) + "/6 127.0.0.1:" + strconv.Itoa(closedPort) + "/5"}
	nodes, err := c.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var up []bool
	for _, n := range nodes {
		up = append(up, n.Up)
	}
	if diff := cmp.Diff([]bool{true, true, false}, up); diff != "" || nodes[2].Err == "" {
		t.Errorf("up (-want +got):\n%s; down's error %q", diff, nodes[2].Err)
	}
	if j := Jobs(nodes, 2); j != 8 {
		t.Errorf("Jobs = %d, want 8 (6 remote slots up + 2 CPUs)", j)
	}
}

func TestLocalRuns(t *testing.T) {
	log := "  CC      kernel/fork.o\n" +
		"distcc[123] (dcc_build_somewhere) Warning: failed to distribute, running locally instead\n" +
		"distcc[124] (dcc_build_somewhere) Warning: remote compilation of 'kernel/exit.c' failed, retried locally and got a different result.\n" +
		"kernel/sys.c: warning: running locally instead of something\n"
	if n := LocalRuns([]byte(log)); n != 2 {
		t.Errorf("LocalRuns = %d, want 2", n)
	}
}
