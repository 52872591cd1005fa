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
lint() {
  go vet ./... && {
    command -v staticcheck >/dev/null || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
  } && staticcheck ./...
}

if [ "${1:-}" = "-short" ]; then
  lint
  exec go test -short -count=1 ./...
fi
start=$(date +%s)
# vet and staticcheck beside the test kernel's preparation (on a fresh
# machine its first minutes are one core's git work): minutes saved.
lintlog=$(mktemp -t firstbad-lint.XXXXXX)
log=$(mktemp -t firstbad-test.XXXXXX)
lint > "$lintlog" 2>&1 &
lintpid=$!
trap 'kill $lintpid 2>/dev/null || true; rm -f "$log" "$lintlog"' EXIT
go run ./internal/testkernel/prepare
if ! wait $lintpid; then
  echo "test.sh: go vet or staticcheck failed:"; cat "$lintlog"; exit 1
fi
echo "test.sh: test kernel ready after $(( $(date +%s) - start )) s"
# Verbose into a file: the summary below gives every test's time (what a
# cold run spends where); on a failure the whole log is printed.
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
