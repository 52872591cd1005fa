package kbuild

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/distcc"
	"github.com/firstbad/firstbad/internal/netrc"
	"github.com/firstbad/firstbad/internal/outcome"
)

// CheckSharing checks --cluster and --ccache-remote before anything runs:
// both go through ccache, and a URL never carries credentials.
func CheckSharing(o Options) error {
	if o.Cluster != "" {
		if _, err := distcc.Parse(o.Cluster); err != nil {
			return outcome.InputErr("%v", err)
		}
		if err := distcc.Installed(); err != nil {
			return outcome.InputErr("%v", err)
		}
	}
	if o.CcacheRemote != "" {
		if _, err := remoteURL(o.CcacheRemote); err != nil {
			return outcome.InputErr("%v", err)
		}
		if err := remoteCapable(); err != nil {
			return outcome.InputErr("%v", err)
		}
	}
	if (o.Cluster != "" || o.CcacheRemote != "") && !strings.HasPrefix(resolveCC(o).CC, "ccache ") {
		return outcome.InputErr("--cluster and --ccache-remote work through ccache: drop --no-ccache, --llvm or a --cc without ccache (or install ccache)")
	}
	return nil
}

// remoteCapable checks that ccache has remote storage (4.4 and later).
func remoteCapable() error {
	out, err := exec.Command("ccache", "--version").Output()
	if err != nil {
		return fmt.Errorf("--ccache-remote: ccache is not installed here: apt-get install ccache")
	}
	var major, minor int
	first, _, _ := strings.Cut(string(out), "\n")
	if _, err := fmt.Sscanf(strings.TrimPrefix(first, "ccache version "), "%d.%d", &major, &minor); err != nil || major < 4 || (major == 4 && minor < 4) {
		return fmt.Errorf("--ccache-remote: %s has no remote storage (ccache 4.4 or later has)", strings.TrimSpace(first))
	}
	return nil
}

// CheckRemote is doctor's look at a --ccache-remote: the URL, ccache's
// version, and whether the server answers a TCP connect now (a build
// whose team cache is down compiles here: slower, not failed).
func CheckRemote(ctx context.Context, raw string) (string, error) {
	u, err := remoteURL(raw)
	if err != nil {
		return "", err
	}
	if err := remoteCapable(); err != nil {
		return "", err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"redis": "6379", "http": "80"}[u.Scheme]
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return "", fmt.Errorf("%s does not answer (%v): builds would compile here", raw, err)
	}
	conn.Close()
	creds := "no credentials"
	if _, _, from := remoteCredentials(u.Hostname()); from != "" {
		creds = "credentials from " + from
	}
	return fmt.Sprintf("%s answers; %s", raw, creds), nil
}

// remoteCredentials are the team ccache's login: from the environment,
// else the netrc file; from names where they came from ("" for none).
func remoteCredentials(host string) (user, pass, from string) {
	if user, pass = os.Getenv("FIRSTBAD_CCACHE_REMOTE_USER"), os.Getenv("FIRSTBAD_CCACHE_REMOTE_PASSWORD"); user != "" || pass != "" {
		return user, pass, "FIRSTBAD_CCACHE_REMOTE_*"
	}
	if user, pass = netrc.Lookup(host); user != "" || pass != "" {
		return user, pass, "netrc"
	}
	return "", "", ""
}

// remoteURL parses a --ccache-remote value: redis:// or http:// (ccache's
// remote storage backends), attributes after "|" kept.
func remoteURL(raw string) (*url.URL, error) {
	base, _, _ := strings.Cut(raw, "|")
	u, err := url.Parse(base)
	if err == nil && u.User != nil {
		return nil, fmt.Errorf("--ccache-remote: put credentials in FIRSTBAD_CCACHE_REMOTE_USER/_PASSWORD or ~/.netrc (or $NETRC), not in the URL")
	}
	if err != nil || (u.Scheme != "redis" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--ccache-remote %q: give redis://HOST[:PORT] or http://HOST/PATH (ccache's remote storage)", raw)
	}
	return u, nil
}

// remoteStorage is ccache's remote_storage for --ccache-remote, with the
// credentials from the environment, else the netrc file. It goes only
// into make's environment, never into a log.
func remoteStorage(raw string) string {
	u, err := remoteURL(raw)
	if err != nil {
		return ""
	}
	_, attrs, _ := strings.Cut(raw, "|")
	user, pass, _ := remoteCredentials(u.Hostname())
	if pass != "" {
		u.User = url.UserPassword(user, pass)
	} else if user != "" {
		u.User = url.User(user)
	}
	s := u.String()
	if attrs != "" {
		s += "|" + attrs
	}
	return s
}

// sharingEnv is the environment a build's compiles add for the team
// ccache and the cluster: the nodes that answer now size make -j (unless
// -j was given) and are logged. A build in a build root keeps its
// compiles here: the nodes run the host's compiler, not the root's.
func (j *buildJob) sharingEnv(ctx context.Context) []string {
	var env []string
	if j.o.CcacheRemote != "" {
		env = append(env, "CCACHE_REMOTE_STORAGE="+remoteStorage(j.o.CcacheRemote))
		fmt.Fprintf(j.log, "firstbad: team ccache %s behind the local one\n", j.o.CcacheRemote)
		if j.tc.Dir != "" {
			fmt.Fprintf(j.log, "firstbad: the build root %s uses the team ccache only if its own ccache is 4.4 or later (bullseye's 4.2 is not)\n", j.tc.ID)
		}
	}
	if j.o.Cluster == "" {
		return env
	}
	c, err := distcc.Parse(j.o.Cluster)
	if err != nil {
		fmt.Fprintf(j.log, "firstbad: --cluster: %v: compiling here\n", err)
		return env
	}
	if j.tc.Dir != "" {
		fmt.Fprintf(j.log, "firstbad: --cluster: this build runs in the build root %s: its compiles stay here (the nodes have the host's compiler)\n", j.tc.ID)
		j.res.Cluster = "not used: build root " + j.tc.ID
		return env
	}
	nodes, err := c.Probe(ctx)
	if err != nil {
		return env
	}
	up, slots := distcc.Up(nodes)
	if j.req.Opts.Jobs <= 0 {
		j.o.Jobs = distcc.Jobs(nodes, runtime.NumCPU())
	}
	for _, n := range nodes {
		if !n.Up {
			fmt.Fprintf(j.log, "firstbad: cluster node %s:%d does not answer (%s): its share compiles here\n", n.Host, n.Port, n.Err)
		}
	}
	j.res.Cluster = fmt.Sprintf("%s: %d nodes answered (%d slots), make -j%d", c, up, slots, j.o.Jobs)
	fmt.Fprintf(j.log, "firstbad: cluster %s\n", j.res.Cluster)
	j.b.Log.Info("compiling on the cluster", "nodes", up, "slots", slots, "jobs", j.o.Jobs)
	dir := cachedir.Dir(j.b.CacheDir).Distcc()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(j.log, "firstbad: --cluster: %v: compiling here\n", err)
		return env
	}
	return append(env, c.Env(dir)...)
}

// noteGivenBack records the compiles the cluster gave back to this
// machine (a node down, gone mid-build, or failing a job): the build went
// on here, slower, and says so.
func (j *buildJob) noteGivenBack(logStart int64) {
	if j.o.Cluster == "" || j.res.Cluster == "" {
		return
	}
	n := distcc.LocalRuns(logFrom(j.res.Log, logStart))
	if n == 0 {
		return
	}
	j.res.ClusterLocal = n
	j.res.Cluster += fmt.Sprintf("; %d compiles ran here instead (a node was down or failed them)", n)
	fmt.Fprintf(j.log, "firstbad: the cluster gave %d compiles back: they ran here\n", n)
	j.b.Log.Warn("the cluster gave compiles back: they ran here", "compiles", n)
}

// noteRemoteErrors says when the team ccache failed lookups or stores:
// those compiles ran here (ccache itself is silent about it).
func (j *buildJob) noteRemoteErrors(n int) {
	if n == 0 || j.o.CcacheRemote == "" {
		return
	}
	fmt.Fprintf(j.log, "firstbad: the team ccache %s failed %d lookups or stores: those compiles ran here\n", j.o.CcacheRemote, n)
	j.b.Log.Warn("the team ccache failed: compiles ran here", "remote", j.o.CcacheRemote, "errors", n)
}
