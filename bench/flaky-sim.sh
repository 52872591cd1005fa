#!/usr/bin/env bash
# flaky-sim.sh — the flaky-bug simulation benchmark (see bench/flaky): the
# Bayesian strategy against plain git bisect and fixed repeats, on synthetic
# histories, printing accuracy, runs, builds and calibration. The target
# setting (p = 0.3, N = 10,000, f = 0) runs first, then the false-alarm
# rows (p = 0.3, f = 0.02). Extra arguments go to
# every run (e.g. -trials 200 for a quicker pass).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
bin=$(mktemp -d)/flaky
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/flaky
"$bin" -n 10000 -p 0.3 -f 0 "$@"
# False alarms nobody told the strategy about: learned (auto, the
# default), told exactly, told 0.
"$bin" -n 1000,10000 -p 0.3 -f 0.02 -model auto,exact,zero "$@" | tail -n +4
"$bin" -n 100,1000 "$@" | tail -n +4
"$bin" -n 10000 -p 0.9,0.5,0.1 -f 0,0.01 "$@" | tail -n +4
