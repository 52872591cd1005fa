package target

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// vm is what the local and the remote QEMU machines share: the console as
// lines and as a log, the evidence paths, the forwarded ports and the exit.
type vm struct {
	lines   chan string
	console string // console log path
	result  string // result channel path
	done    chan struct{}
	start   time.Time
	mu      sync.Mutex
	killed  bool
	exit    Exit
	ports   map[int]int // guest port -> host port
}

func newVM(dir string, ports map[int]int) vm {
	return vm{lines: make(chan string, 1024), console: filepath.Join(dir, "console.log"), result: filepath.Join(dir, "result.jsonl"),
		done: make(chan struct{}), start: time.Now(), ports: ports}
}

func (m *vm) HostPort(guest int) int { return m.ports[guest] }
func (m *vm) Lines() <-chan string   { return m.lines }
func (m *vm) ConsoleLog() string     { return m.console }
func (m *vm) ResultLog() string      { return m.result }

func (m *vm) Wait() Exit {
	<-m.done
	return m.exit
}

// create opens the evidence files a hosted target writes: the console log
// and the local copy of the result channel.
func (m *vm) create() (console, result *os.File, err error) {
	if console, err = os.Create(m.console); err != nil {
		return nil, nil, err
	}
	if result, err = os.Create(m.result); err != nil {
		console.Close()
		return nil, nil, err
	}
	return console, result, nil
}

// markKilled records a Stop and says whether it was the first.
func (m *vm) markKilled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	first := !m.killed
	m.killed = true
	return first
}

func (m *vm) wasKilled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.killed
}

// stopOn calls stop when ctx ends before the machine does.
func (m *vm) stopOn(ctx context.Context, stop func()) {
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-m.done:
		}
	}()
}

// pump copies console output to the log and, line by line, to Lines,
// until out ends.
func (m *vm) pump(out io.Reader, log io.Writer) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(log, line)
		select {
		case m.lines <- line:
		default: // nobody reading fast enough: the log keeps it
		}
	}
}

// finish records how the machine ended and closes Lines.
func (m *vm) finish(e Exit) {
	e.Duration = time.Since(m.start)
	m.mu.Lock()
	e.Killed = m.killed
	m.mu.Unlock()
	m.exit = e
	close(m.lines)
	close(m.done)
}
