// Package clitest runs the real firstbad binary in end-to-end tests: built
// once per test binary (static, as it also runs inside guests and on
// machines), run with its own state and cache dirs, fed test scripts.
package clitest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Main builds firstbad from the package at dir (cmd/firstbad, relative to
// the test's package), sets *binary to it, runs the tests and exits.
func Main(m *testing.M, dir string, binary *string) {
	tmp, err := os.MkdirTemp("", "firstbad-bin-")
	if err != nil {
		panic(err)
	}
	*binary = filepath.Join(tmp, "firstbad")
	build := exec.Command("go", "build", "-o", *binary, dir)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building firstbad: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// Result is one command's exit code and output.
type Result struct {
	Code   int
	Stdout string
	Stderr string
}

// Run runs binary with args to its end; only a failure to run it at all
// fails the test.
func Run(t testing.TB, binary string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return Result{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// Script writes an executable sh script with body and returns its path.
func Script(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
