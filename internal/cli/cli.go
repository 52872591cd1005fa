// Package cli is firstbad's command line: flags in, parameters to the
// session and the pipeline, results out. Exit codes come from one table
// (internal/outcome); cmd/firstbad only calls Main.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/proc"
	"github.com/firstbad/firstbad/internal/session"
)

const exitCodesHelp = `Exit codes: 0 success (culprit found, or command done); 1 no single culprit
(ambiguous, endpoint mismatch, budget exhausted, aborted by the reproducer);
2 usage or input error; 3 infrastructure error; 130 interrupted.`

// stepCommand marks test and boot, whose exit codes are git bisect run's.
const stepCommand = "firstbad/step-exit-codes"

// exitStatus ends a command with a non-zero status that is not an error: a
// run without a single culprit, a test that said bad. Its message, if any,
// is printed like an error's.
type exitStatus struct {
	code int
	msg  string
}

func (e *exitStatus) Error() string { return e.msg }

func status(code int) error { return &exitStatus{code: code} }

type globals struct {
	stateDir string
	cacheDir string
	json     bool
	verbose  bool
	stdout   *countWriter
	stderr   io.Writer
	ran      bool // a command's RunE started: errors after it are classified
}

// countWriter remembers whether anything was written: --json promises
// exactly one object on stdout, and an error before the result still owes
// one.
type countWriter struct {
	w io.Writer
	n int
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	return c.w.Write(p)
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
	g := &globals{stdout: &countWriter{w: stdout}, stderr: stderr}
	root := rootCmd(g)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return outcome.ExitOK
	}
	family := outcome.RunCommands
	if cmd != nil && cmd.Annotations[stepCommand] != "" {
		family = outcome.StepCommands
	}
	if !g.ran {
		// Cobra's own: an unknown command or flag, wrong arguments.
		err = outcome.InputErr("%v (see %s --help)", err, cmd.CommandPath())
	}
	code := exitCode(family, err)
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "firstbad: %s\n", msg)
	}
	if g.json && g.stdout.n == 0 {
		writeErrorJSON(g.stdout, err, code)
	}
	return code
}

func rootCmd(g *globals) *cobra.Command {
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
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.stateDir, "state-dir", defaultDir("XDG_STATE_HOME", ".local/state"), "journals of runs")
	pf.StringVar(&g.cacheDir, "cache-dir", defaultDir("XDG_CACHE_HOME", ".cache"), "clones, build dirs and artifacts shared by all runs")
	pf.BoolVar(&g.json, "json", false, "print exactly one JSON object on stdout (logs go to stderr)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "more log output")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%v (see %s --help)", err, c.CommandPath())
	})
	root.AddCommand(runCmd(g), resumeCmd(g), statusCmd(g), listCmd(g), logCmd(g), reportCmd(g), buildCmd(g), bootCmd(g), testCmd(g), doctorCmd(g), gcCmd(g), markCmd(g), retestCmd(g))
	return root
}

// exitCode is the process exit code for how a command ended.
func exitCode(family outcome.Command, err error) int {
	var st *exitStatus
	if errors.As(err, &st) {
		return st.code
	}
	return outcome.ErrorExit(family, err)
}

// writeErrorJSON is the one JSON object of a command that failed before it
// had a result.
func writeErrorJSON(w io.Writer, err error, code int) {
	var st *exitStatus
	kind := outcome.KindOf(err).String()
	if errors.As(err, &st) {
		kind = "status"
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"outcome": outcome.RunError, "error": err.Error(), "kind": kind, "exit_code": code})
}

// wrap marks that a command's own code ran: from then on its errors carry
// their kind (an unclassified one is the infrastructure's).
func (g *globals) wrap(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		g.ran = true
		if err := g.checkDirs(); err != nil {
			return err
		}
		return fn(cmd, args)
	}
}

// checkDirs refuses empty dirs (an unset variable would otherwise put
// runs and clones in the current directory, often the user's repository)
// and makes them absolute.
func (g *globals) checkDirs() error {
	for _, d := range []struct {
		flag string
		dir  *string
	}{{"--state-dir", &g.stateDir}, {"--cache-dir", &g.cacheDir}} {
		if *d.dir == "" {
			return outcome.InputErr("%s is empty: give a directory (an unset variable?)", d.flag)
		}
		abs, err := filepath.Abs(*d.dir)
		if err != nil {
			return outcome.InputErr("%s %s: %v", d.flag, *d.dir, err)
		}
		*d.dir = abs
	}
	return nil
}

// session builds the session for a command: logger, progress display, and
// checks that the state and cache dirs are usable.
func (g *globals) session(needWrite bool) (*session.Session, error) {
	if needWrite {
		for _, d := range []struct{ flag, dir string }{{"--state-dir", g.stateDir}, {"--cache-dir", g.cacheDir}} {
			if err := writable(d.dir); err != nil {
				return nil, outcome.InputErr("%s %s is not writable: %v", d.flag, d.dir, err)
			}
		}
	}
	// Children of a killed firstbad (reproducers, QEMU, make) are found and
	// stopped by the next one. They are recorded in the cache dir, where the
	// build dirs live: a make left running in one must be stopped before
	// another build takes the dir over, whatever state dir that run uses.
	children := cachedir.Dir(g.cacheDir).Children()
	if n := proc.Reap(children); n > 0 {
		fmt.Fprintf(g.stderr, "firstbad: stopped %d process group(s) left running by a firstbad that was killed\n", n)
	}
	proc.SetRegistry(children)
	s := &session.Session{StateDir: g.stateDir, CacheDir: g.cacheDir, Log: g.logger()}
	if isTerminal(g.stderr) && !g.verbose {
		s.Progress = newLiveLine(g.stderr).update
	} else {
		s.Progress = logProgress(s.Log)
	}
	return s, nil
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelInfo
	if isTerminal(g.stderr) {
		level = slog.LevelWarn
	}
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
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

// signalGrace is how long a second signal leaves deferred clean-ups (a
// libvirt domain's definition put back, a VM host's boot stopped) before
// the process exits.
const signalGrace = 5 * time.Second

// signalContext is cancelled by the first SIGINT, SIGTERM, SIGHUP or
// SIGQUIT (the run records what was running as interrupted and exits). A
// second one kills the children at once and leaves the unwinding
// signalGrace to finish, then exits.
func signalContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
		case <-done:
			return
		}
		fmt.Fprintln(stderr, "\nfirstbad: stopping after recording the current step as interrupted (again to quit now)")
		cancel()
		select {
		case <-ch:
		case <-done:
			return
		}
		proc.KillAll()
		select {
		case <-time.After(signalGrace):
			os.Exit(outcome.ExitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel(); close(done) }
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
		err = rep.JSON(g.stdout)
	} else {
		err = rep.Markdown(g.stdout)
	}
	if err != nil {
		return outcome.InfraErr("output", err)
	}
	if errors.Is(runErr, session.ErrInterrupted) || res.Outcome == outcome.RunInterrupted {
		fmt.Fprintf(g.stderr, "firstbad: run %s interrupted; continue it with: firstbad resume %s\n", res.RunID, res.RunID)
		if runErr != nil {
			return runErr
		}
		return status(outcome.ExitInterrupted)
	}
	if code := outcome.RunExit(res.Outcome); code != 0 {
		return status(code)
	}
	return nil
}
