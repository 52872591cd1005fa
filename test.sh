#!/usr/bin/env bash
# test.sh — the whole test suite: formatting, vet, staticcheck, then the
# shared test kernel (a real kernel history and one build, made before
# `go test` so that go test's timeout bounds the tests only), then go test.
#
#   ./test.sh          everything: real kernels under QEMU, an sshd and
#                      libvirt as VM hosts (run ./setup.sh first)
#   ./test.sh -short   the unit suite only: fakes, real git, no kernels
set -euo pipefail
cd "$(dirname "$0")"
export PATH=$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed on:"; echo "$unformatted"; exit 1; fi
go vet ./...
if ! command -v staticcheck >/dev/null; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
staticcheck ./...

if [ "${1:-}" = "-short" ]; then
  exec go test -short -count=1 ./...
fi
start=$(date +%s)
go run ./internal/testkernel/prepare
echo "test.sh: test kernel ready after $(( $(date +%s) - start )) s"
# Verbose into a file: the summary below gives every test's time (what a
# cold run spends where); on a failure the whole log is printed.
log=$(mktemp -t firstbad-test.XXXXXX)
trap 'rm -f "$log"' EXIT
rc=0
go test -count=1 -timeout 75m -v ./... > "$log" 2>&1 || rc=$?
grep -E '^--- |^    --- ' "$log" | grep -vE '\((0\.[0-9]+|[0-9]\.[0-9]+)s\)$' || true
grep -E '^(ok|FAIL|\?) ' "$log" || true
if [ "$rc" != 0 ]; then
  echo "test.sh: go test failed (exit $rc); its whole output:"
  cat "$log"
  exit "$rc"
fi
echo "test.sh: done after $(( $(date +%s) - start )) s"
