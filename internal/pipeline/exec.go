package pipeline

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/proc"
)

// Exec runs a shell command in firstbad's checkout of each commit, like
// `git bisect run sh -c CMD`. The commit reaches the command only through
// its environment (FIRSTBAD_COMMIT), never pasted into the command text.
type Exec struct {
	Worktree *git.Worktree
	Command  string
	Timeout  time.Duration // per run; 0 = none
	Invert   bool          // exit 0 means "new" (finding a fix)
	RunID    string
}

// Evaluate implements Pipeline.
func (e *Exec) Evaluate(ctx context.Context, req Request) (Outcome, error) {
	if err := e.Worktree.Checkout(ctx, req.Commit); err != nil {
		if ctx.Err() != nil {
			return Outcome{}, ctx.Err()
		}
		return Outcome{}, outcome.InfraErr("checkout", err)
	}
	if err := os.MkdirAll(req.EvidenceDir, 0o755); err != nil {
		return Outcome{}, outcome.InfraErr("evidence", err)
	}
	var out Outcome
	req.stage("test")
	for i := 1; i <= max(req.Repeat, 1); i++ {
		r, err := e.run(ctx, req, i)
		if err != nil {
			return out, err
		}
		out.Runs = append(out.Runs, r)
		if r.ExitCode >= 128 && !r.timedOut() {
			out.Abort = fmt.Sprintf("the reproducer exited with code %d on %s (128 or more aborts the bisect, as with git bisect run)", r.ExitCode, req.Commit)
			return out, nil
		}
	}
	return out, nil
}

func (r Run) timedOut() bool { return r.Reason == "timeout" }

func (e *Exec) run(ctx context.Context, req Request, n int) (Run, error) {
	outPath := filepath.Join(req.EvidenceDir, fmt.Sprintf("run-%d.log", n))
	f, err := os.Create(outPath)
	if err != nil {
		return Run{}, outcome.InfraErr("evidence", err)
	}
	defer f.Close()
	cmd := exec.Command("/bin/sh", "-c", e.Command)
	cmd.Dir = e.Worktree.Dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(),
		"FIRSTBAD_COMMIT="+req.Commit,
		"FIRSTBAD_STEP="+strconv.Itoa(req.Step),
		"FIRSTBAD_RUN="+strconv.Itoa(n),
		"FIRSTBAD_RUN_ID="+e.RunID,
	)
	res, err := proc.Run(ctx, cmd, e.Timeout)
	if err != nil {
		if ctx.Err() != nil {
			return Run{}, ctx.Err()
		}
		return Run{}, outcome.InfraErr("exec", err)
	}
	r := Run{ExitCode: res.ExitCode, Duration: res.Duration, Output: outPath}
	if res.TimedOut {
		r.Verdict, r.Reason = outcome.Bad, "timeout"
		if e.Invert {
			r.Verdict = outcome.Good
		}
		fmt.Fprintf(f, "\nfirstbad: killed after the %s timeout\n", e.Timeout)
		return r, nil
	}
	v, abort := ExitVerdict(res.ExitCode, e.Invert)
	r.Verdict = v
	switch {
	case abort:
		r.Reason = fmt.Sprintf("exit %d: abort", res.ExitCode)
	case res.ExitCode == 125:
		r.Reason = "exit 125: skip"
	default:
		r.Reason = fmt.Sprintf("exit %d", res.ExitCode)
	}
	return r, nil
}
