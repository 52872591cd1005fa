#!/usr/bin/env bash
# ccache-mode-bench.sh — ccache's depend mode (firstbad's) against its
# default mode (direct, falling back to the preprocessed text) when a
# kernel's config changes: a first build of CONFIG in a fresh build dir and
# an empty ccache, then a second build in another fresh dir of CONFIG with
# one option flipped (PRINTK_TIME, which printk.c alone reads) — what a new
# --kconfig, a --rootfs mode's fragment or a Kconfig change that olddefconfig
# resolves differently gives. Three sequences: depend then depend, default
# then default, depend then default (the "per-build mode" idea: depend
# mode for a fresh dir, the default later). Prints each build's seconds,
# compiles and ccache hits.
#
# DIRS limits the builds to some directories (make's DIR/ targets) to keep
# the run short; the default is the whole kernel.
#
# Usage: bench/ccache-mode-bench.sh CONFIG [HISTORY_DIR] [DIRS...]
#   CONFIG: a final .config of the history's tip (e.g. an artifact's config
#   from bench/config-bench.sh: bench/out/config-*-q35/cache/artifacts/*/config)
set -euo pipefail
cd "$(dirname "$0")/.."
config=$(realpath "${1:?usage: bench/ccache-mode-bench.sh CONFIG [HISTORY_DIR] [DIRS...]}")
hist=${2:-${FIRSTBAD_TEST_ROOT:-/var/tmp/firstbad-test}/linux}
shift $(( $# < 2 ? $# : 2 ))
dirs=("$@")
work=$(mktemp -d /var/tmp/firstbad-ccache-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q --shared --no-checkout "$hist" "$work/src"
git -C "$work/src" checkout -q tip
export KBUILD_BUILD_TIMESTAMP='1970-01-01 00:00:00 UTC' KBUILD_BUILD_USER=firstbad KBUILD_BUILD_HOST=firstbad
export CCACHE_BASEDIR=$work/src CCACHE_NOHASHDIR=1

# build MODE DIR FLIP: configure DIR from CONFIG (FLIP: PRINTK_TIME on), build.
build() {
  local mode=$1 dir=$work/$2 t0 t1
  mkdir -p "$dir"
  cp "$config" "$dir/.config"
  [ "$3" = flip ] && sed -i 's/^# CONFIG_PRINTK_TIME is not set$/CONFIG_PRINTK_TIME=y/' "$dir/.config"
  make -s -C "$work/src" O="$dir" olddefconfig > /dev/null
  ccache -z > /dev/null
  t0=$(date +%s.%N)
  if [ "$mode" = depend ]; then
    CCACHE_DEPEND=1 make -s -C "$work/src" O="$dir" -j"$(nproc)" CC="ccache gcc" "${dirs[@]}" > /dev/null
  else
    CCACHE_DEPEND= make -s -C "$work/src" O="$dir" -j"$(nproc)" CC="ccache gcc" "${dirs[@]}" > /dev/null
  fi
  t1=$(date +%s.%N)
  read -r hits misses < <(ccache --print-stats | awk -F'\t' '$1=="direct_cache_hit"||$1=="preprocessed_cache_hit"{h+=$2} $1=="cache_miss"{m=$2} END{print h+0, m+0}')
  printf '  %-8s %-5s %7.1f s  %5d ccache hits  %5d misses\n' "$mode" "$3" "$(echo "$t1 - $t0" | bc)" "$hits" "$misses"
}

grep -q '^# CONFIG_PRINTK_TIME is not set$' "$config" || { echo "CONFIG must have PRINTK_TIME off (the option flipped)"; exit 2; }
echo "tip $(git -C "$hist" rev-parse --short=12 tip), ${dirs[*]:-the whole kernel}"
for seq in "depend depend" "default default" "depend default"; do
  read -r first second <<< "$seq"
  export CCACHE_DIR=$work/ccache-${first}-${second}
  echo "$first, then $second:"
  build "$first" "a-$first-$second" same
  build "$second" "b-$first-$second" flip
done
