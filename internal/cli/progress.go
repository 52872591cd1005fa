package cli

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/firstbad/firstbad/internal/report"
	"github.com/firstbad/firstbad/internal/session"
)

// liveLine redraws one status line on a terminal while a step runs.
type liveLine struct {
	w     io.Writer
	mu    sync.Mutex
	cur   session.Progress
	stop  chan struct{}
	spent time.Duration // on finished search steps
	steps int
}

// eta estimates the time left from the steps measured so far.
func (l *liveLine) eta() string {
	p := l.cur
	if l.steps == 0 || p.Kind != "search" {
		return ""
	}
	left := time.Duration(max(p.EstSteps-p.Step+1, 0)) * (l.spent / time.Duration(l.steps))
	left -= time.Since(p.Started)
	if left < 0 {
		return ""
	}
	return " ETA ~" + left.Round(time.Second).String()
}

func newLiveLine(w io.Writer) *liveLine { return &liveLine{w: w} }

func (l *liveLine) update(p session.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur = p
	if p.Stage == "done" {
		if p.Kind == "search" {
			l.spent += time.Since(p.Started)
			l.steps++
		}
		if l.stop != nil {
			close(l.stop)
			l.stop = nil
		}
		fmt.Fprintf(l.w, "\r\033[K[%s] %s %s: %s (%.1fs) %s\n", p.Label(), report.Short(p.Commit),
			p.Verdict, report.Clean(p.Reason), time.Since(p.Started).Seconds(), clip(report.Clean(p.Subject), 50))
		return
	}
	l.draw()
	if l.stop == nil {
		l.stop = make(chan struct{})
		go l.tick(l.stop)
	}
}

func (l *liveLine) tick(stop chan struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			l.mu.Lock()
			l.draw()
			l.mu.Unlock()
		}
	}
}

func (l *liveLine) draw() {
	p := l.cur
	fmt.Fprintf(l.w, "\r\033[K[%s] %s %s %.0fs%s %s", p.Label(), report.Short(p.Commit), p.Stage,
		time.Since(p.Started).Seconds(), l.eta(), clip(report.Clean(p.Subject), 40))
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// logProgress reports steps as plain log lines (stderr is not a terminal).
func logProgress(log *slog.Logger) func(session.Progress) {
	return func(p session.Progress) {
		if p.Stage == "done" {
			log.Info("step done", "step", p.Label(), "commit", report.Short(p.Commit), "verdict", p.Verdict,
				"reason", report.Clean(p.Reason), "seconds", fmt.Sprintf("%.1f", time.Since(p.Started).Seconds()))
			return
		}
		log.Info("step", "step", p.Label(), "commit", report.Short(p.Commit), "stage", p.Stage,
			"subject", report.Clean(p.Subject))
	}
}
