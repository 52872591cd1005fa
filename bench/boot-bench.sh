#!/usr/bin/env bash
# boot-bench.sh — per-run cost of boot + trivial guest test under QEMU:
# boot-to-test-start (QEMU start to the agent's start marker), the whole
# command's wall time, and the harness's own share (everything that is not
# QEMU booting the kernel or the test running: firstbad start-up, initramfs
# overlay, QEMU start-up and power-off, classification).
#
# Usage: bench/boot-bench.sh BZIMAGE [RUNS]   (default 10 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
kernel=${1:?usage: bench/boot-bench.sh BZIMAGE [RUNS]}
runs=${2:-10}
export PATH=$PATH:/usr/local/go/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/firstbad" ./cmd/firstbad
printf 'exit 0\n' > "$work/t.sh"
fb() { "$work/firstbad" --state-dir "$work/state" --cache-dir "$work/cache" "$@"; }
fb --json boot --kernel "$kernel" --guest-test "$work/t.sh" --accel tcg > /dev/null   # warm: initramfs cache
tw=0 tb=0 tt=0
for i in $(seq 1 "$runs"); do
  t0=$(date +%s.%N)
  fb --json boot --kernel "$kernel" --guest-test "$work/t.sh" --accel tcg > "$work/r.json"
  t1=$(date +%s.%N)
  read -r b t < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["boot_s"], r["test_s"])' "$work/r.json")
  w=$(echo "$t1 - $t0" | bc)
  printf 'run %2d: wall %.2fs  boot-to-test-start %.2fs  test %.3fs\n' "$i" "$w" "$b" "$t"
  tw=$(echo "$tw + $w" | bc); tb=$(echo "$tb + $b" | bc); tt=$(echo "$tt + $t" | bc)
done
printf '\nmean per boot+trivial test: %.2fs (target <= 2.5s)\n' "$(echo "$tw / $runs" | bc -l)"
printf 'mean boot-to-test-start:    %.2fs\n' "$(echo "$tb / $runs" | bc -l)"
printf 'harness share (wall - boot - test): %.2fs per run (%.0f%%)\n' "$(echo "($tw - $tb - $tt) / $runs" | bc -l)" "$(echo "($tw - $tb - $tt) * 100 / $tw" | bc -l)"
