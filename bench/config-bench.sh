#!/usr/bin/env bash
# config-bench.sh — what the required config costs, per QEMU machine type:
# a clean build of the example history's tip (tinyconfig + firstbad's
# required and trim fragments + the autogroup fragment, no ccache, a fresh
# build dir) for q35 and for microvm: objects compiled, wall and CPU
# seconds, image size; then boots of each kernel with a trivial test
# (QEMU start to the guest's start marker, and the whole command).
#
# A machine's build figures and kernel are kept in bench/out/config-TIP-M/
# (a clean build is 10-20 minutes here); --rebuild redoes them. Run it on
# an otherwise idle machine: CPU seconds are steadier than wall seconds on
# a shared one, so both are printed.
#
# Usage: bench/config-bench.sh [--rebuild] [HISTORY_DIR] [BOOTS]
set -euo pipefail
cd "$(dirname "$0")/.."
rebuild=0
[ "${1:-}" = --rebuild ] && { rebuild=1; shift; }
hist=${1:-${FIRSTBAD_TEST_ROOT:-/var/tmp/firstbad-test}/linux}
boots=${2:-5}
export PATH=$PATH:/usr/local/go/bin
work=$(mktemp -d /var/tmp/firstbad-config-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/firstbad" ./cmd/firstbad
printf 'exit 0\n' > "$work/t.sh"
tip=$(git -C "$hist" rev-parse --short=12 tip)

for m in q35 microvm; do
  out=bench/out/config-$tip-$m
  if [ $rebuild = 1 ] || [ ! -s "$out/figures" ]; then
    rm -rf "$out"; mkdir -p "$out"
    /usr/bin/time -f '%e %U %S %P' -o "$out/time" "$work/firstbad" --state-dir "$work/state" --cache-dir "$out/cache" --json \
      build --repo "$hist" tip --machine "$m" --kconfig examples/autogroup/kconfig --no-ccache > "$out/build.json"
    python3 - "$out" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
r = json.load(open(out + "/build.json"))
wall, user, sys_, pct = open(out + "/time").read().split()
cfg = {l.split("=")[0] for l in open(os.path.join(os.path.dirname(r["kernel"]), "config")) if l.startswith("CONFIG_") and l.rstrip().endswith("=y")}
print(r["compiled"], wall, float(user) + float(sys_), pct, os.path.getsize(r["kernel"]), len(cfg), r["kernel"], file=open(out + "/figures", "w"))
PYEOF
  fi
  read -r objects wall cpu pct size opts kernel < "$out/figures"
  tb=0 tw=0
  for i in $(seq 1 "$boots"); do
    t0=$(date +%s.%N)
    "$work/firstbad" --state-dir "$work/state" --cache-dir "$work/cache" --json boot --kernel "$kernel" --machine "$m" --guest-test "$work/t.sh" --accel tcg > "$work/r.json"
    t1=$(date +%s.%N)
    b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["boot_s"])' "$work/r.json")
    tb=$(echo "$tb + $b" | bc); tw=$(echo "$tw + $t1 - $t0" | bc)
  done
  printf '%-8s objects %5d  clean build %6.0f s wall, %6.0f s CPU (%s)  bzImage %8d bytes  %4d options =y  boot %.2f s, command %.2f s (mean of %d)\n' \
    "$m" "$objects" "$wall" "$cpu" "$pct" "$size" "$opts" "$(echo "$tb / $boots" | bc -l)" "$(echo "$tw / $boots" | bc -l)" "$boots"
done
