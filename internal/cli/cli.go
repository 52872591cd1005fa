// Package cli is firstbad's command line: flags and output around the
// session. cmd/firstbad only calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/proc"
	"github.com/firstbad/firstbad/internal/session"
)

// Exit codes of run, resume, status, log, report and list.
const (
	ExitOK          = 0
	ExitNoCulprit   = 1
	ExitUsage       = 2
	ExitInfra       = 3
	ExitInterrupted = 130
)

const exitCodesHelp = `Exit codes: 0 success (culprit found, or command done); 1 no single culprit
(ambiguous, endpoint mismatch, budget exhausted, aborted by the reproducer);
2 usage or input error; 3 infrastructure error; 130 interrupted.`

// exitError carries an exit code up to Main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

type globals struct {
	stateDir string
	cacheDir string
	json     bool
	verbose  bool
	stdout   io.Writer
	stderr   io.Writer
}

func defaultDir(env, fallback string) string {
	if d := os.Getenv(env); d != "" {
		return filepath.Join(d, "firstbad")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, fallback, "firstbad")
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "firstbad",
		Short: "find the commit that broke (or fixed) something, unattended",
		Long: `firstbad finds the commit that changed a behaviour: for each candidate commit
chosen by the search it checks the commit out in its own clone (your repository
is never written), runs your reproducer, records the verdict with its evidence,
and drives the search to the culprit.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.stateDir, "state-dir", defaultDir("XDG_STATE_HOME", ".local/state"), "journals of runs")
	pf.StringVar(&g.cacheDir, "cache-dir", defaultDir("XDG_CACHE_HOME", ".cache"), "clones, build dirs and artifacts shared by all runs")
	pf.BoolVar(&g.json, "json", false, "print exactly one JSON object on stdout (logs go to stderr)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "more log output")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: fmt.Errorf("%v (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(runCmd(g), resumeCmd(g), statusCmd(g), listCmd(g), logCmd(g), reportCmd(g), buildCmd(g), bootCmd(g), testCmd(g), doctorCmd(g), gcCmd(g))

	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(stderr, "firstbad: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "firstbad: %v\n", err)
	switch {
	case outcome.IsInput(err):
		return ExitUsage
	case errors.Is(err, session.ErrInterrupted):
		return ExitInterrupted
	case outcome.IsInfra(err):
		return ExitInfra
	}
	// Cobra's own usage errors (unknown command, bad args).
	if isUsage(err) {
		return ExitUsage
	}
	return ExitInfra
}

type usageError struct{ error }

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func usage(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// session builds the session for a command: logger, progress display, and
// checks that the state and cache dirs are usable.
func (g *globals) session(needWrite bool) (*session.Session, error) {
	for _, d := range []*string{&g.stateDir, &g.cacheDir} {
		if abs, err := filepath.Abs(*d); err == nil {
			*d = abs
		}
	}
	if needWrite {
		for _, d := range []struct{ flag, dir string }{{"--state-dir", g.stateDir}, {"--cache-dir", g.cacheDir}} {
			if err := writable(d.dir); err != nil {
				return nil, usage("%s %s is not writable: %v", d.flag, d.dir, err)
			}
		}
	}
	// Children of a killed firstbad (reproducers, QEMU, make) are found and
	// stopped by the next one. They are recorded in the cache dir, where the
	// build dirs live: a make left running in one must be stopped before
	// another build takes the dir over, whatever state dir that run uses.
	children := filepath.Join(g.cacheDir, "children")
	if n := proc.Reap(children); n > 0 {
		fmt.Fprintf(g.stderr, "firstbad: stopped %d process group(s) left running by a firstbad that was killed\n", n)
	}
	proc.SetRegistry(children)
	tty := isTerminal(g.stderr)
	level := slog.LevelInfo
	if tty {
		level = slog.LevelWarn
	}
	if g.verbose {
		level = slog.LevelDebug
	}
	s := &session.Session{StateDir: g.stateDir, CacheDir: g.cacheDir,
		Log: slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))}
	if tty && !g.verbose {
		s.Progress = newLiveLine(g.stderr).update
	} else {
		s.Progress = logProgress(s.Log)
	}
	return s, nil
}

func writable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// signalContext is cancelled by the first SIGINT/SIGTERM (the run records
// what was running as interrupted and exits); a second one exits at once.
func signalContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-ch
		fmt.Fprintln(stderr, "\nfirstbad: stopping after recording the current step as interrupted (again to quit now)")
		cancel()
		<-ch
		proc.KillAll()
		os.Exit(ExitInterrupted)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// finish prints a run's result and maps its outcome to the exit code.
func (g *globals) finish(ctx context.Context, s *session.Session, res *session.Result, runErr error) error {
	if res == nil {
		return runErr
	}
	rep, err := s.FullReport(context.WithoutCancel(ctx), res.RunID)
	if err != nil {
		return err
	}
	if g.json {
		if err := rep.JSON(g.stdout); err != nil {
			return err
		}
	} else if err := rep.Markdown(g.stdout); err != nil {
		return err
	}
	if errors.Is(runErr, session.ErrInterrupted) || res.Outcome == journal.OutcomeInterrupted {
		fmt.Fprintf(g.stderr, "firstbad: run %s interrupted; continue it with: firstbad resume %s\n", res.RunID, res.RunID)
		if runErr != nil && !errors.Is(runErr, session.ErrInterrupted) {
			return &exitError{code: ExitInfra, err: runErr}
		}
		return &exitError{code: ExitInterrupted}
	}
	return outcomeExit(res.Outcome)
}

func outcomeExit(outcome string) error {
	switch outcome {
	case journal.OutcomeFound, journal.OutcomeRunning:
		return nil
	case journal.OutcomeInterrupted:
		return &exitError{code: ExitInterrupted}
	}
	return &exitError{code: ExitNoCulprit}
}
