// Package davtest starts a real HTTP artifact store for tests: nginx with
// its WebDAV module (PUT, full paths created), on a free loopback port,
// serving a temp dir, stopped when the test ends.
package davtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Start serves a fresh store and returns its URL and the dir it serves
// (to damage entries behind the server's back). Without nginx the test
// is skipped under -short and fails otherwise (setup.sh installs it).
func Start(t *testing.T) (url, root string) {
	t.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if testing.Short() {
			t.Skip("nginx is not installed")
		}
		t.Fatal("nginx is not installed: run ./setup.sh")
	}
	dir := t.TempDir()
	root = filepath.Join(dir, "store")
	for _, d := range []string{root, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "nginx.conf")
	// Every path nginx writes is under dir: it runs as this user, off
	// the system's config.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // else workers run as nobody, locked out of dir
	}
	// One process (no master and workers): killing it leaves nothing
	// behind, where a killed master leaves its workers running.
	os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process off;
%[4]s
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		root %[3]s;
		client_max_body_size 0;
		location / {
			dav_methods PUT DELETE;
			create_full_put_path on;
			dav_access user:rw group:r all:r;
		}
	}
}
`, dir, port, root, user)), 0o644)
	cmd := exec.Command(nginx, "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url = fmt.Sprintf("http://127.0.0.1:%d", port)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url + "/"); err == nil {
			resp.Body.Close()
			return url, root
		}
		if time.Now().After(end) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start:\n%s", log)
		}
	}
}
