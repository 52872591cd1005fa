#!/usr/bin/env bash
# bisect-vs-git.sh — the wide comparison of firstbad's classic strategy with
# real `git bisect run`: every possible culprit of many random merge graphs,
# with and without paths after -- and --first-parent, skips, two goods. The
# test suite runs a sample of the same comparisons; this is the sweep.
#
# Usage: bench/bisect-vs-git.sh [GRAPHS]   (default 100; hours on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
graphs=${1:-100}
start=$(date +%s)
go test -count=1 -timeout 12h ./internal/search -run 'MatchesGit' -v -args -git-graphs "$graphs" -git-culprits 0 |
  grep -E '^(--- |ok|FAIL|PASS)' | grep -v '^    ' | sort | uniq -c | sort -rn | head -40
echo "graphs per path-limited test: $graphs; every culprit; $(( $(date +%s) - start )) s"
