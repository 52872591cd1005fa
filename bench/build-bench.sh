#!/usr/bin/env bash
# build-bench.sh — the build benchmark: builds the commits a bisect of the
# example kernel history visits, two ways, and prints both totals and ratios:
#
#   baseline  clean build per step, ccache disabled (make distclean; CCACHE_DISABLE=1),
#             as syzkaller and image-per-step flows do
#   firstbad  firstbad build: persistent out-of-tree build dir + ccache, from
#             cold caches (empty ccache, empty firstbad cache), then again warm
#             (a second bisect over the same range)
#
# Baseline figures are cached per step (keyed by history tip and config) under
# bench/out/, so a re-run, or one after an interruption, only measures what is
# missing; pass --rebaseline to redo them.
#
# --baseline-only CONFIG measures (or prints, if cached) only the baseline,
# with the final .config of the sequence's last step from an earlier run
# (e.g. an artifact's config in a firstbad cache dir), so that the baseline
# can be measured on an otherwise idle machine, a step at a time.
#
# Usage: bench/build-bench.sh [--rebaseline] [--baseline-only CONFIG] [HISTORY_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rebaseline=0 only=""
[ "${1:-}" = --rebaseline ] && { rebaseline=1; shift; }
[ "${1:-}" = --baseline-only ] && { only=$(realpath "$2"); shift 2; }
hist=${1:-$HOME/.cache/firstbad-example/linux}
[ -d "$hist/.git" ] || examples/make-kernel-history.sh "$hist"
export PATH=$PATH:/usr/local/go/bin
mkdir -p bench/out
work=$(mktemp -d /var/tmp/firstbad-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/firstbad" ./cmd/firstbad
fb() { "$work/firstbad" --state-dir "$work/state" "$@"; }

# The sequence a bisect for the autogroup change visits (as git bisect would).
culprit=$(git -C "$hist" log --format=%H --grep='^sched: Do not enable autogrouping by default' base..tip | tail -1)
git clone -q --no-checkout "$hist" "$work/seq"
(cd "$work/seq" && git bisect start tip base >/dev/null &&
  git bisect run sh -c "git rev-parse HEAD >> $work/sequence; git merge-base --is-ancestor $culprit HEAD && exit 1; exit 0" >/dev/null)
mapfile -t seq < "$work/sequence"
echo "history $(git -C "$hist" rev-parse --short tip), culprit ${culprit:0:12}, bisect sequence of ${#seq[@]} builds"

frag=examples/autogroup/kconfig

# firstbad, cold then warm.
run_firstbad() { # label cachedir
  local total=0 i=0
  crossings=0
  for c in "${seq[@]}"; do
    i=$((i+1))
    t0=$(now)
    fb --cache-dir "$2" --json build --repo "$hist" "$c" --kconfig "$frag" > "$work/b.json" || true
    t1=$(now)
    read -r compiled hits bsys cached < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["compiled"], r["ccache_hits"], r["build_system"], r["cached"])' "$work/b.json")
    d=$(echo "$t1 - $t0" | bc)
    total=$(echo "$total + $d" | bc)
    printf '  %-8s step %d %.12s %7.1fs  compiled %5d  ccache hits %5d  build-system change %-5s  artifact cache %s\n' "$1" "$i" "$c" "$d" "$compiled" "$hits" "$bsys" "$cached"
    [ "$bsys" = True ] && crossings=$((crossings+1))
  done
  echo "$total" > "$work/total-$1"
}
if [ -z "$only" ]; then
  export CCACHE_DIR=$work/ccache-cold
  echo "firstbad, cold caches (fresh ccache, fresh build dir and artifact cache):"
  run_firstbad cold "$work/cache"
  echo "  the sequence crosses $crossings build-system change(s) (a near-full rebuild each)"
  echo "firstbad, warm (a second bisect over the same range):"
  run_firstbad warm "$work/cache"
  unset CCACHE_DIR
fi

# Baseline: the final config firstbad verified, clean build per step.
config=${only:-$(ls -t "$work"/cache/artifacts/*/config | head -1)}
# One file per step, so an interrupted baseline keeps what it measured.
base_dir=$(baseline_dir "$hist" "$config")
[ $rebaseline = 1 ] && rm -rf "$base_dir"
mkdir -p "$base_dir"
echo "baseline (clean build per step, no ccache):"
for c in "${seq[@]}"; do
  if [ ! -s "$base_dir/$c" ]; then
    [ -d "$work/src" ] || git clone -q "$hist" "$work/src"
    git -C "$work/src" checkout -q -f "$c"
    t0=$(now)
    make -s -C "$work/src" distclean
    cp "$config" "$work/src/.config"
    make -s -C "$work/src" ARCH=x86_64 olddefconfig >/dev/null
    CCACHE_DISABLE=1 make -s -C "$work/src" ARCH=x86_64 -j"$(nproc)" bzImage >/dev/null 2>&1 || true
    t1=$(now)
    echo "$t1 - $t0" | bc > "$base_dir/$c"
  fi
  printf '  baseline %.12s %7.1fs\n' "$c" "$(cat "$base_dir/$c")"
done
base=0
for c in "${seq[@]}"; do
  # A step's figure can be withdrawn (moved out of the cache) mid-run.
  [ -s "$base_dir/$c" ] || { echo "baseline step ${c:0:12} has no figure: run again to measure it"; exit 1; }
  base=$(echo "$base + $(cat "$base_dir/$c")" | bc)
done
if [ -n "$only" ]; then
  printf '\nbaseline (clean, no ccache): %8.1fs   (cached in %s)\n' "$base" "$base_dir"
  exit 0
fi
cold=$(cat "$work/total-cold"); warm=$(cat "$work/total-warm")
echo
printf 'baseline (clean, no ccache): %8.1fs   (cached in %s)\n' "$base" "$base_dir"
printf 'firstbad cold:               %8.1fs   baseline/firstbad = %.2fx\n' "$cold" "$(echo "$base / $cold" | bc -l)"
printf 'firstbad warm:               %8.1fs   baseline/firstbad = %.2fx\n' "$warm" "$(echo "$base / $warm" | bc -l)"
