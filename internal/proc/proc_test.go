package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestStopGroup(t *testing.T) {
	cases := []struct {
		name   string
		script string // run by sh in its own group; $1 is a file to write on SIGTERM
		termed bool   // the group saw SIGTERM and ended on it
	}{
		{"ends on SIGTERM", `trap 'echo term > "$1"; exit 0' TERM; sleep 30 & wait`, true},
		{"ignores SIGTERM", `trap '' TERM; sleep 30`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "termed")
			cmd := exec.Command("sh", "-c", c.script, "sh", f)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go cmd.Wait()
			time.Sleep(200 * time.Millisecond) // let the trap be set
			pgid := cmd.Process.Pid
			start := time.Now()
			StopGroup(pgid, time.Second)
			if groupAlive(pgid) {
				t.Fatal("the group outlived StopGroup")
			}
			_, err := os.Stat(f)
			if termed := err == nil; termed != c.termed {
				t.Errorf("ended on SIGTERM: %v, want %v", termed, c.termed)
			}
			if d := time.Since(start); c.termed && d > 900*time.Millisecond {
				t.Errorf("a group that ended on SIGTERM took %s to stop", d)
			}
		})
	}
}

// KillAll (the second Ctrl-C) ends every group still registered.
func TestKillAll(t *testing.T) {
	SetRegistry(t.TempDir())
	defer SetRegistry("")
	var pgids []int
	for i := 0; i < 2; i++ {
		cmd := exec.Command("sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait()
		defer Register(cmd.Process.Pid)()
		pgids = append(pgids, cmd.Process.Pid)
	}
	KillAll()
	for _, pgid := range pgids {
		for end := time.Now().Add(2 * time.Second); groupAlive(pgid) && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond)
		}
		if groupAlive(pgid) {
			t.Errorf("group %d survived KillAll", pgid)
		}
	}
}
