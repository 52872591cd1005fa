package target

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// vm is what every machine shares: the console as lines (none dropped) and
// as a log, the evidence paths, the forwarded ports and the exit.
type vm struct {
	q       *consoleQueue
	lines   chan string
	console string // console log path
	result  string // result channel path
	done    chan struct{}
	stopped chan struct{} // closed by the first Stop
	fed     chan struct{} // closed when the feeder has ended
	start   time.Time
	mu      sync.Mutex
	killed  bool
	exit    Exit
	ports   map[int]int // guest port -> host port
}

func newVM(dir string, ports map[int]int) vm {
	q, lines := newConsoleQueue(filepath.Join(dir, "console.spill"), consoleMemBytes), make(chan string)
	stopped, fed := make(chan struct{}), make(chan struct{})
	go feed(q, lines, stopped, fed)
	return vm{q: q, lines: lines, console: filepath.Join(dir, "console.log"), result: filepath.Join(dir, "result.jsonl"),
		done: make(chan struct{}), stopped: stopped, fed: fed, start: time.Now(), ports: ports}
}

// feed hands the queue's lines to the reader, in order, until the console
// ends or the machine is stopped (what is left is in the log).
func feed(q *consoleQueue, lines chan<- string, stopped <-chan struct{}, fed chan<- struct{}) {
	defer close(fed)
	defer close(lines)
	for {
		l, ok := q.next(stopped)
		if !ok {
			return
		}
		select {
		case lines <- l:
		case <-stopped:
			return
		}
	}
}

func (m *vm) HostPort(guest int) int { return m.ports[guest] }
func (m *vm) Lines() <-chan string   { return m.lines }
func (m *vm) ConsoleLog() string     { return m.console }
func (m *vm) ResultLog() string      { return m.result }

// Wait blocks until the machine is gone (and, once stopped, until the
// console's feeder has ended too).
func (m *vm) Wait() Exit {
	<-m.done
	if m.wasKilled() {
		<-m.fed
	}
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
	if first {
		m.killed = true
		close(m.stopped)
	}
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

// pump copies console output to the log and, line by line, to the queue,
// until out ends. Nothing is dropped: a reader that falls behind reads
// the lines later, from memory or from the queue's spill file.
func (m *vm) pump(out io.Reader, log io.Writer) {
	eachLine(out, func(line string) {
		fmt.Fprintln(log, line)
		m.q.push(line)
	})
}

// eachLine calls fn with each line of r (up to 1 MiB long) until r ends.
func eachLine(r io.Reader, fn func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fn(sc.Text())
	}
}

// finish records how the machine ended; the reader gets the lines still
// queued, then Lines is closed.
func (m *vm) finish(e Exit) {
	e.Duration = time.Since(m.start)
	m.mu.Lock()
	e.Killed = m.killed
	m.mu.Unlock()
	m.exit = e
	m.q.close()
	close(m.done)
}

// consoleMemBytes bounds the console lines held in memory for a reader
// that falls behind; past it they wait in a spill file.
const consoleMemBytes = 4 << 20

// consoleQueue is a FIFO of console lines bounded in memory: once full,
// lines go to a spill file until the reader has read them all back.
type consoleQueue struct {
	mu        sync.Mutex
	wake      chan struct{}
	mem       []string
	memBytes  int
	max       int
	spillPath string
	spillW    *os.File
	spillR    *bufio.Reader
	spillF    *os.File
	spilled   int // lines in the spill file not read yet
	closed    bool
}

func newConsoleQueue(spillPath string, max int) *consoleQueue {
	return &consoleQueue{wake: make(chan struct{}, 1), max: max, spillPath: spillPath}
}

func (q *consoleQueue) push(line string) {
	q.mu.Lock()
	if q.spilled == 0 && q.memBytes+len(line) <= q.max {
		q.mem = append(q.mem, line)
		q.memBytes += len(line)
	} else if q.spillTo(line) != nil {
		// No room on disk either: keep it in memory past the bound
		// rather than lose a line the classifier may need.
		q.mem = append(q.mem, line)
		q.memBytes += len(line)
	}
	q.mu.Unlock()
	q.signal()
}

// spillTo appends line to the spill file (opened on first use).
func (q *consoleQueue) spillTo(line string) error {
	if q.spillW == nil {
		w, err := os.Create(q.spillPath)
		if err != nil {
			return err
		}
		r, err := os.Open(q.spillPath)
		if err != nil {
			w.Close()
			return err
		}
		q.spillW, q.spillF, q.spillR = w, r, bufio.NewReader(r)
	}
	if _, err := q.spillW.WriteString(line + "\n"); err != nil {
		return err
	}
	q.spilled++
	return nil
}

func (q *consoleQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close ends the queue: next returns what is left, then false.
func (q *consoleQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// next returns the oldest unread line, waiting for one; false once the
// queue is closed and empty, or stop is closed.
func (q *consoleQueue) next(stop <-chan struct{}) (string, bool) {
	for {
		q.mu.Lock()
		if len(q.mem) > 0 {
			l := q.mem[0]
			q.mem[0] = ""
			q.mem = q.mem[1:]
			q.memBytes -= len(l)
			q.mu.Unlock()
			return l, true
		}
		if q.spilled > 0 {
			l, err := q.spillR.ReadString('\n')
			q.spilled--
			if q.spilled == 0 {
				q.resetSpill()
			}
			q.mu.Unlock()
			if err != nil && l == "" {
				continue
			}
			return strings.TrimSuffix(l, "\n"), true
		}
		if q.closed {
			q.resetSpill()
			q.mu.Unlock()
			return "", false
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-stop:
			q.mu.Lock()
			q.resetSpill()
			q.mu.Unlock()
			return "", false
		}
	}
}

// resetSpill drops a spill file that has been read back.
func (q *consoleQueue) resetSpill() {
	if q.spillW == nil {
		return
	}
	q.spillW.Close()
	q.spillF.Close()
	os.Remove(q.spillPath)
	q.spillW, q.spillF, q.spillR, q.spilled = nil, nil, nil, 0
}
