package toolchain

import (
	"context"
	"github.com/firstbad/firstbad/internal/debroot"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rootsDir is where the real-root tests keep their roots: beside the
// shared test kernel, so a machine (and a CI run) makes each root once.
func rootsDir() string {
	if d := os.Getenv("FIRSTBAD_TEST_ROOT"); d != "" {
		return filepath.Join(d, "roots")
	}
	return "/var/tmp/firstbad-test/roots"
}

// TestDebianRoot makes (once) bullseye's build root with mmdebstrap and
// runs its gcc through bubblewrap: the era's compiler, the bound dirs
// read-write, the root read-only, the rest of the host out of sight.
func TestDebianRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("makes a Debian root with mmdebstrap (minutes, once per machine)")
	}
	if err := Installed(); err != nil {
		t.Fatalf("%v (./setup.sh installs them)", err)
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	start := time.Now()
	r, err := Ensure(ctx, Spec{Kind: "debian", Release: "bullseye"}, rootsDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	m := debroot.ReadMade(r.Dir)
	if m == nil {
		t.Fatalf("%s has no marker of a finished root", r.Dir)
	}
	t.Logf("root %s: %d MiB, made %s in %.0f s; ready after %v here", r.Dir, m.Bytes>>20, m.Created.Format(time.RFC3339), m.Seconds, time.Since(start).Round(time.Second))
	if !strings.HasPrefix(r.ID, "debian:bullseye: gcc (Debian 10.") || !strings.Contains(r.ID, "GNU ld (GNU Binutils for Debian) 2.35") {
		t.Errorf("ID = %q, want bullseye's gcc 10 and binutils 2.35", r.ID)
	}

	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "hello.c"), []byte("#include <stdio.h>\nint main(void) { printf(\"%d\\n\", __GNUC__); return 0; }\n"), 0o644)
	cmd := r.Command("sh", []string{"-c", "gcc -o hello hello.c && ./hello && test ! -e " + projectDir(t) + " && echo hidden && ! touch /usr/firstbad-probe 2>/dev/null && echo read-only"}, work)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in the root: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 3 || got[0] != "10" || got[1] != "hidden" || got[2] != "read-only" {
		t.Errorf("in the root: %q, want gcc 10's program, the project dir out of sight and the root read-only", out)
	}
	if _, err := os.Stat(filepath.Join(work, "hello")); err != nil {
		t.Errorf("the bound dir is not written through: %v", err)
	}

	again := time.Now()
	r2, err := Ensure(ctx, Spec{Kind: "debian", Release: "bullseye"}, rootsDir(), log)
	if err != nil || r2.ID != r.ID {
		t.Fatalf("second Ensure: %v, %q", err, r2.ID)
	}
	if d := time.Since(again); d > 30*time.Second {
		t.Errorf("second Ensure took %v: the root is made once", d)
	}
}

func projectDir(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
