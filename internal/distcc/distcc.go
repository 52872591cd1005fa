// Package distcc is firstbad's compile cluster: distcc's host list, which
// nodes answer and with how many slots, the environment that routes a
// kernel build's compiles through them (ccache in front, with distcc as
// its CCACHE_PREFIX: a hit never leaves the machine, a miss compiles on a
// node), and what a build log says about compiles the cluster did not
// take.
//
// distcc rather than icecream: its host list is plain text the user
// controls, a node needs only distccd and the same compiler, it reaches
// nodes over SSH too, and when a node is down or fails a job it compiles
// locally by itself, so a shrinking cluster slows a build but never fails
// it.
package distcc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultPort is distccd's TCP port.
const DefaultPort = 3632

// Usage is the --cluster flag's help.
const Usage = `compile cluster: distcc (distcc's own host list: $DISTCC_HOSTS or ~/.distcc/hosts) or distcc:HOSTS (e.g. "distcc:node1/8 node2:3632/16"); ccache stays in front, misses compile on the nodes; a node that is down or fails makes the compile run here`

// systemHosts is distcc's system-wide host list.
var systemHosts = "/etc/distcc/hosts"

// Cluster is a --cluster value.
type Cluster struct {
	// Hosts is distcc's host list; "" means distcc's own (the
	// environment's DISTCC_HOSTS, else its hosts files).
	Hosts string
}

// Parse reads "distcc" or "distcc:HOSTS".
func Parse(s string) (*Cluster, error) {
	kind, hosts, _ := strings.Cut(s, ":")
	if kind != "distcc" {
		return nil, fmt.Errorf("--cluster %q: give distcc or distcc:HOSTS (distcc's host list, e.g. \"node1/8 node2/8\")", s)
	}
	c := &Cluster{Hosts: strings.TrimSpace(hosts)}
	list, err := c.List()
	if err != nil {
		return nil, err
	}
	if _, err := ParseHosts(list); err != nil {
		return nil, fmt.Errorf("--cluster: %v", err)
	}
	return c, nil
}

// String is the flag's value again.
func (c *Cluster) String() string {
	if c.Hosts == "" {
		return "distcc"
	}
	return "distcc:" + c.Hosts
}

// List is the host list distcc will use: the flag's, else the ones distcc
// reads itself, in its order.
func (c *Cluster) List() (string, error) {
	if c.Hosts != "" {
		return c.Hosts, nil
	}
	if h := os.Getenv("DISTCC_HOSTS"); strings.TrimSpace(h) != "" {
		return h, nil
	}
	var files []string
	if d := os.Getenv("DISTCC_DIR"); d != "" {
		files = append(files, filepath.Join(d, "hosts"))
	} else if home, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(home, ".distcc", "hosts"))
	}
	files = append(files, systemHosts)
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			if list := stripComments(string(data)); strings.TrimSpace(list) != "" {
				return list, nil
			}
		}
	}
	return "", errors.New("--cluster distcc: no host list (set DISTCC_HOSTS, write ~/.distcc/hosts, or give --cluster distcc:HOSTS)")
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		l, _, _ = strings.Cut(l, "#")
		b.WriteString(l + " ")
	}
	return b.String()
}

// Node is one entry of the host list.
type Node struct {
	Host  string `json:"host"`
	Port  int    `json:"port,omitempty"` // TCP nodes
	Slots int    `json:"slots"`
	Local bool   `json:"local,omitempty"` // localhost: compiles here
	SSH   bool   `json:"ssh,omitempty"`   // @host: distcc starts distccd over SSH
	Up    bool   `json:"up"`
	Err   string `json:"error,omitempty"` // why it is not up
}

// ParseHosts reads distcc's host list: localhost[/N], @host[/N][,opts],
// host[:port][/N][,opts]; global options (--randomize, --localslots=N)
// and zeroconf are left to distcc.
func ParseHosts(list string) ([]Node, error) {
	var nodes []Node
	for _, f := range strings.Fields(list) {
		if strings.HasPrefix(f, "--") || f == "+zeroconf" {
			continue
		}
		spec, _, _ := strings.Cut(f, ",")
		if at := strings.Index(spec, "@"); at >= 0 {
			// [user]@host[/limit][:command]: the command may hold slashes.
			if colon := strings.Index(spec[at:], ":"); colon >= 0 {
				spec = spec[:at+colon]
			}
		}
		spec, limit, hasLimit := strings.Cut(spec, "/")
		n := Node{Host: spec, Slots: 4}
		if hasLimit {
			v, err := strconv.Atoi(limit)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("distcc host %q: the limit after / must be a positive number", f)
			}
			n.Slots = v
		}
		switch {
		case spec == "localhost":
			n.Local = true
			if !hasLimit {
				n.Slots = 2
			}
		case strings.Contains(spec, "@"):
			// distcc starts distccd over SSH.
			n.SSH = true
			n.Host = spec[strings.Index(spec, "@")+1:]
		default:
			n.Port = DefaultPort
			if h, p, err := net.SplitHostPort(spec); err == nil {
				v, err := strconv.Atoi(p)
				if err != nil || v < 1 || v > 65535 {
					return nil, fmt.Errorf("distcc host %q: bad port", f)
				}
				n.Host, n.Port = h, v
			}
		}
		if n.Host == "" {
			return nil, fmt.Errorf("distcc host %q: no host name", f)
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("the distcc host list %q names no host", strings.TrimSpace(list))
	}
	return nodes, nil
}

// Probe says which nodes answer now: a TCP connect for distccd nodes;
// localhost and SSH nodes count as up (distcc starts SSH nodes' distccd
// itself, and falls back here if it cannot).
func (c *Cluster) Probe(ctx context.Context) ([]Node, error) {
	list, err := c.List()
	if err != nil {
		return nil, err
	}
	nodes, err := ParseHosts(list)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for i := range nodes {
		n := &nodes[i]
		if n.Local || n.SSH {
			n.Up = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 2 * time.Second}
			conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(n.Host, strconv.Itoa(n.Port)))
			if err != nil {
				n.Err = err.Error()
				return
			}
			conn.Close()
			n.Up = true
		}()
	}
	wg.Wait()
	return nodes, ctx.Err()
}

// Jobs sizes make -j for the cluster: the slots of the nodes that answer,
// plus this machine's CPUs for what stays here (preprocessing, assembly,
// links and any compile a node gives back). localhost's own slots are
// among the CPUs.
func Jobs(nodes []Node, cpus int) int {
	_, slots := Up(nodes)
	return cpus + slots
}

// Up counts the remote nodes that answer and their slots.
func Up(nodes []Node) (up, slots int) {
	for _, n := range nodes {
		if n.Up && !n.Local {
			up++
			slots += n.Slots
		}
	}
	return up, slots
}

// Env routes ccache's misses through distcc. stateDir keeps distcc's
// locks and host backoff state (not the user's ~/.distcc). A node that
// stops answering mid-compile is given up after a minute, not distcc's
// default five, and its compile runs here.
func (c *Cluster) Env(stateDir string) []string {
	env := []string{"CCACHE_PREFIX=distcc", "DISTCC_DIR=" + stateDir, "DISTCC_FALLBACK=1", "DISTCC_IO_TIMEOUT=60"}
	if list, err := c.List(); err == nil {
		env = append(env, "DISTCC_HOSTS="+strings.Join(strings.Fields(list), " "))
	}
	return env
}

// Installed says whether distcc is here.
func Installed() error {
	if _, err := exec.LookPath("distcc"); err != nil {
		return errors.New("--cluster distcc: distcc is not installed here: apt-get install distcc")
	}
	return nil
}

// LocalRuns counts, in a build log, the compiles the cluster gave back:
// distcc's warnings when it could not send a job or a node failed it.
func LocalRuns(log []byte) int {
	n := 0
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "distcc[") && (strings.Contains(l, "running locally instead") || strings.Contains(l, "retried locally") || strings.Contains(l, "retrying locally")) {
			n++
		}
	}
	return n
}
