package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/testkernel"
)

// shareBuild is build --json's answer, the fields sharing adds.
type shareBuild struct {
	Key          string `json:"key"`
	Verdict      string `json:"verdict"`
	Cached       bool   `json:"cached"`
	Compiled     int    `json:"compiled"`
	Hits         int    `json:"ccache_hits"`
	RemoteHits   int    `json:"ccache_remote_hits"`
	Cluster      string `json:"cluster"`
	ClusterLocal int    `json:"cluster_local"`
	Log          string `json:"build_log"`
}

// TestBuildSharing builds real kernels of the example history through the
// team-sharing engines, started here on loopback: redis as ccache's
// remote storage (a build with an empty local ccache takes what another
// build stored), distccd as a one-node compile cluster (the compiles go
// there), and a node that takes jobs and drops them (the build goes on
// here and says so). Every build is incremental on the test kernel's
// build dir, a few objects each: each commit adds a line unique to this
// run to files the test kernel compiles, so nothing comes from an
// earlier run's caches.
func TestBuildSharing(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	line := func(what string) string { return "/* firstbad share test " + nonce + " " + what + " */" }
	build := func(commit string, args ...string) shareBuild {
		t.Helper()
		res := e.run(append([]string{"--json", "build", "--repo", k.Repo, commit, "--kconfig", k.Fragment}, args...)...)
		var b shareBuild
		if err := json.Unmarshal([]byte(res.stdout), &b); err != nil || res.code != 0 || b.Verdict != "ok" {
			t.Fatalf("build %.12s: exit %d (%v)\n%s\n%s", commit, res.code, err, res.stdout, res.stderr)
		}
		return b
	}
	logOf := func(b shareBuild) string { data, _ := os.ReadFile(b.Log); return string(data) }

	t.Run("team ccache", func(t *testing.T) {
		redis := startRedis(t)
		remote := "--ccache-remote=redis://" + redis
		// One machine builds reboot.c's new version, then calibrate.c's
		// (reboot.c back as at tip); its misses go to redis too.
		c1 := commitEdits(t, k.Repo, "firstbad-share-1", "share test 1", edit{"kernel/reboot.c", line("reboot")})
		c2 := commitEdits(t, k.Repo, "firstbad-share-2", "share test 2", edit{"init/calibrate.c", line("calibrate")})
		both := commitEdits(t, k.Repo, "firstbad-share-3", "share test 3", edit{"kernel/reboot.c", line("reboot")}, edit{"init/calibrate.c", line("calibrate")})
		b1 := build(c1, remote)
		build(c2, remote)
		// Another machine's empty local ccache: reboot.c's object comes
		// from redis (what the link changes each time, as the boot
		// stub's misc.o, compiles).
		t.Setenv("CCACHE_DIR", t.TempDir())
		b3 := build(both, remote)
		t.Logf("first build: %d compiled, %d hits; with an empty local ccache: %d compiled, %d from the team ccache", b1.Compiled, b1.Hits, b3.Compiled, b3.RemoteHits)
		if b1.RemoteHits != 0 || b3.RemoteHits < 1 {
			t.Fatalf("%d then %d from redis; want none, then reboot.c's object\n%s", b1.RemoteHits, b3.RemoteHits, tailText(logOf(b3), 20))
		}
		if strings.Contains(logOf(b3), "@") {
			t.Errorf("the build log names credentials:\n%s", tailText(logOf(b3), 20))
		}
	})
	t.Run("cluster", func(t *testing.T) {
		node, log, _ := startDistccd(t, 2)
		c := commitEdits(t, k.Repo, "firstbad-share-4", "share test 4", edit{"kernel/panic.c", line("panic")}, edit{"lib/string.c", line("string")})
		b := build(c, "--cluster", "distcc:"+node+"/2")
		served, _ := os.ReadFile(log)
		t.Logf("cluster: %s; %d compiled\n%s", b.Cluster, b.Compiled, grepLines(string(served), "COMPILE_OK"))
		if !strings.Contains(b.Cluster, "1 nodes answered (2 slots)") || b.ClusterLocal != 0 {
			t.Errorf("cluster %q, %d given back; want one node of 2 slots, none given back", b.Cluster, b.ClusterLocal)
		}
		for _, f := range []string{"kernel/panic.c", "lib/string.c"} {
			if !strings.Contains(string(served), f) {
				t.Errorf("distccd did not compile %s:\n%s\nbuild log:\n%s", f, served, tailText(logOf(b), 20))
			}
		}
	})
	t.Run("the node stops mid-build", func(t *testing.T) {
		// A line in a header 19 of the kernel's objects include; the
		// node takes one job at a time and is killed once it has done
		// one: the build finishes here and says how many came back.
		node, log, stop := startDistccd(t, 1)
		c := commitEdits(t, k.Repo, "firstbad-share-6", "share test 6", edit{"include/linux/pagevec.h", line("pagevec")})
		cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "--json", "build", "--repo", k.Repo, c,
			"--kconfig", k.Fragment, "--cluster", "distcc:"+node+"/1")
		var stdout strings.Builder
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		served := ""
		for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline) && !strings.Contains(served, "COMPILE_OK"); time.Sleep(200 * time.Millisecond) {
			data, _ := os.ReadFile(log)
			served = string(data)
		}
		stop()
		err := <-done
		var b shareBuild
		if jerr := json.Unmarshal([]byte(stdout.String()), &b); err != nil || jerr != nil || b.Verdict != "ok" {
			t.Fatalf("build: %v %v\n%s", err, jerr, stdout.String())
		}
		t.Logf("distccd compiled %d before it was killed; %d compiled; cluster: %s", strings.Count(served, "COMPILE_OK"), b.Compiled, b.Cluster)
		if !strings.Contains(served, "COMPILE_OK") || b.ClusterLocal < 1 || b.Compiled < 15 {
			t.Errorf("served %d, given back %d, compiled %d: want some on the node, the rest here\n%s", strings.Count(served, "COMPILE_OK"), b.ClusterLocal, b.Compiled, tailText(logOf(b), 20))
		}
	})
	t.Run("a node drops its jobs, the team ccache is down", func(t *testing.T) {
		// The node answers the probe, then closes every connection:
		// distcc gives the jobs back. Nothing listens where the team
		// ccache should be. The build finishes here and says both.
		node := startDropper(t)
		c := commitEdits(t, k.Repo, "firstbad-share-5", "share test 5", edit{"kernel/panic.c", line("panic dropped")})
		b := build(c, "--cluster", "distcc:"+node+"/4", "--ccache-remote", fmt.Sprintf("redis://127.0.0.1:%d", freePort(t)))
		t.Logf("cluster: %s", b.Cluster)
		if b.ClusterLocal < 1 || !strings.Contains(b.Cluster, "ran here instead") || !strings.Contains(logOf(b), "the cluster gave") {
			t.Errorf("cluster %q, %d given back; want the compiles given back and said\n%s", b.Cluster, b.ClusterLocal, tailText(logOf(b), 20))
		}
		if !strings.Contains(logOf(b), "the team ccache redis://127.0.0.1") || !strings.Contains(logOf(b), "those compiles ran here") {
			t.Errorf("the build log does not say the team ccache failed:\n%s", tailText(logOf(b), 20))
		}
	})
}

// freePort is a loopback TCP port free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// daemon starts a server in its own process group, stopped (group and
// all) when the test ends or stop is called, and waits for its port.
func daemon(t *testing.T, port int, env []string, name string, args ...string) (stop func()) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (./setup.sh installs it)", name)
	}
	out, _ := os.Create(filepath.Join(t.TempDir(), name+".out"))
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait(); out.Close() }) }
	t.Cleanup(stop)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return stop
		}
		time.Sleep(100 * time.Millisecond)
	}
	data, _ := os.ReadFile(out.Name())
	t.Fatalf("%s did not listen on %d:\n%s", name, port, data)
	return nil
}

func startRedis(t *testing.T) string {
	port := freePort(t)
	daemon(t, port, nil, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// startDistccd starts a distccd for loopback clients; it drops root for
// its own user, so its log is in a dir anyone can write.
func startDistccd(t *testing.T, jobs int) (node, log string, stop func()) {
	// Not under t.TempDir(): its parent is private to root.
	dir, err := os.MkdirTemp("", "firstbad-distccd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o1777)
	log = filepath.Join(dir, "distccd.log")
	port := freePort(t)
	// Its temp files too: a distccd killed mid-job leaves them.
	stop = daemon(t, port, []string{"TMPDIR=" + dir}, "distccd", "--no-detach", "--daemon", "--allow", "127.0.0.1", "--listen", "127.0.0.1", "--port", strconv.Itoa(port),
		"--log-file", log, "--log-level", "info", "--jobs", strconv.Itoa(jobs))
	return fmt.Sprintf("127.0.0.1:%d", port), log, stop
}

// startDropper is a node that accepts connections and closes them.
func startDropper(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A new build dir starts as a copy of a sibling that built the same final
// .config (here: the test kernel's options plus a fragment restating one
// of them, so another build dir): the first build in it is incremental.
// The build dir is removed at the end, so every run starts it afresh.
func TestSeededBuildDir(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	restate := filepath.Join(t.TempDir(), "restate.config")
	os.WriteFile(restate, []byte("CONFIG_SCHED_AUTOGROUP=y\n"), 0o644)
	// The sibling builds a commit first (so it is the newest and its
	// state is known whatever ran before); the new dir then builds one
	// that differs from it in one file.
	line := "/* firstbad seed test " + strconv.FormatInt(time.Now().UnixNano(), 36) + " */"
	sibling := commitEdits(t, k.Repo, "firstbad-seed-sibling", "seed test sibling", edit{"kernel/reboot.c", line})
	if res := e.run("--json", "build", "--repo", k.Repo, sibling, "--kconfig", k.Fragment); res.code != 0 {
		t.Fatalf("build of the sibling's commit: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	c := commitEdits(t, k.Repo, "firstbad-seed", "seed test", edit{"kernel/reboot.c", line + "\n" + line})
	res := e.run("--json", "build", "--repo", k.Repo, c, "--kconfig", k.Fragment, "--kconfig", restate)
	var b shareBuild
	if err := json.Unmarshal([]byte(res.stdout), &b); err != nil || res.code != 0 || b.Verdict != "ok" {
		t.Fatalf("build: exit %d (%v)\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	data, _ := os.ReadFile(b.Log)
	log := string(data)
	if m := regexp.MustCompile(`O=(\S+)`).FindStringSubmatch(log); m != nil {
		t.Cleanup(func() { os.RemoveAll(m[1]); os.Remove(m[1] + ".lock") })
	}
	if !strings.Contains(log, "starts as a copy of") || b.Compiled > 20 {
		t.Fatalf("a new build dir of a config built next door: %d objects compiled, want an incremental build\n%s", b.Compiled, tailText(log, 30))
	}
	t.Logf("%d objects compiled: %s", b.Compiled, grepLines(log, "starts as a copy"))
}
