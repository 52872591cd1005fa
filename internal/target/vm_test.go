package target

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A reader stalled for 5 s (the classifier waiting on the guest's SSH, say)
// loses no console line: a result marker printed meanwhile is still seen,
// in order, whether the lines wait in memory or in the spill file. The
// pump used to drop lines when nobody read, turning a result into a false
// "hang".
func TestConsoleKeepsLinesForAStalledReader(t *testing.T) {
	for _, mem := range []int{consoleMemBytes, 4096} {
		t.Run(fmt.Sprint(mem), func(t *testing.T) {
			dir := t.TempDir()
			m := newVM(dir, nil)
			m.q.max = mem
			pr, pw := io.Pipe()
			log, _ := os.Create(filepath.Join(dir, "console.log"))
			pumped := make(chan struct{})
			go func() {
				m.pump(pr, log)
				close(pumped)
			}()
			const n = 20000
			go func() {
				for i := range n {
					fmt.Fprintf(pw, "line %d\n", i)
				}
				fmt.Fprintf(pw, "FIRSTBAD-RESULT nonce=x run=1 exit=0\n")
				pw.Close()
			}()
			select {
			case <-pumped:
			case <-time.After(30 * time.Second):
				t.Fatal("the pump blocked on a reader that does not read")
			}
			time.Sleep(5 * time.Second) // the stalled reader
			m.finish(Exit{})
			i := 0
			for l := range m.Lines() {
				want := fmt.Sprintf("line %d", i)
				if i == n {
					want = "FIRSTBAD-RESULT nonce=x run=1 exit=0"
				}
				if l != want {
					t.Fatalf("line %d: %q, want %q", i, l, want)
				}
				i++
			}
			if i != n+1 {
				t.Fatalf("read %d lines, want %d", i, n+1)
			}
			if _, err := os.Stat(filepath.Join(dir, "console.spill")); err == nil {
				t.Error("the spill file outlived the queue")
			}
			m.Wait()
		})
	}
}

// Stopping a machine whose reader went away ends the feeder: Wait returns.
func TestStopEndsFeeder(t *testing.T) {
	m := newVM(t.TempDir(), nil)
	for i := range 100 {
		m.q.push(fmt.Sprint(i))
	}
	<-m.Lines()
	m.markKilled()
	m.finish(Exit{})
	done := make(chan struct{})
	go func() { m.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait blocked on the feeder")
	}
}
