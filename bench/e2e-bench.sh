#!/usr/bin/env bash
# e2e-bench.sh — the end-to-end benchmark: one kernel bisect of the example
# history (the autogroup change), three ways, from cold caches, side by side:
#
#   (a) git bisect run + a script: clean build per step, ccache disabled
#       (make distclean; CCACHE_DISABLE=1), boot in QEMU with firstbad's
#       initramfs, run the test (exit 125 on a build failure) — the flow from
#       the story
#   (b) the same script as a skilled user would tune it: a persistent
#       out-of-tree build dir and ccache (fresh ccache)
#   (c) firstbad run with its defaults (the bad endpoint checked first,
#       confirmation, revert check), fresh ccache and cache dir; then again
#       warm (a second run over the same range); then cold again with git
#       bisect run's contract (--endpoint-check lazy --revert-check off)
#
# It prints each flow's culprit, builds and wall time, the ratios a/c, b/c
# and c/b, firstbad's own overhead (wall time minus build, boot and test
# seconds from its report), and warm/cold. (a) takes hours on a 2-core
# machine: its figures are cached under bench/out/, keyed by history, config
# and test, so a re-run measures only (b) and (c) unless --remeasure.
#
# --a-from-build-bench: when (a) has no cached figure, compose it instead of
# running it: the clean builds of the same commits from build-bench.sh's
# cached baseline (same history, same final .config, measured idle one step
# at a time) plus the boot+test seconds (b) measured for each step now. The
# output says which it is. The reports and logs of the run are kept in
# bench/out/e2e-<date>/.
#
# All flows use the final .config firstbad assembled (tinyconfig + firstbad's
# fragment + examples/autogroup/kconfig) and the same guest test and
# initramfs (firstbad boot --kernel boots and tests (a) and (b)'s kernels).
#
# --skip-a: no (a) at all when none is cached (b and c only, ~80 min here).
#
# Usage: bench/e2e-bench.sh [--remeasure | --a-from-build-bench | --skip-a] [HISTORY_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
remeasure=0 compose=0 skip_a=0
[ "${1:-}" = --remeasure ] && { remeasure=1; shift; }
[ "${1:-}" = --a-from-build-bench ] && { compose=1; shift; }
[ "${1:-}" = --skip-a ] && { skip_a=1; shift; }
hist=$(realpath "${1:-$HOME/.cache/firstbad-example/linux}")
[ -d "$hist/.git" ] || examples/make-kernel-history.sh "$hist"
export PATH=$PATH:/usr/local/go/bin
mkdir -p bench/out
work=$(mktemp -d /var/tmp/firstbad-e2e.XXXXXX)
keep=bench/out/e2e-$(date +%Y%m%d-%H%M%S)
trap 'mkdir -p "$keep"; cp "$work"/*.json "$work"/*.log "$work"/*.wall "$work"/steps-* "$keep"/ 2>/dev/null; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/firstbad" ./cmd/firstbad
fb=$work/firstbad
test=$PWD/examples/autogroup/test.sh
frag=$PWD/examples/autogroup/kconfig
jq_() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($1)" "$2"; }

# (c) firstbad, cold then warm.
c_run() { # label cachedir [run flags]
  local t0 t1 label=$1 cache=$2
  shift 2
  t0=$(now)
  "$fb" --state-dir "$work/state-$label" --cache-dir "$cache" --json run --repo "$hist" --good base --bad tip \
    --guest-test "$test" --kconfig "$frag" --timeout 2m "$@" > "$work/$label.json" 2> "$work/$label.log" || true
  t1=$(now)
  echo "$t1 - $t0" | bc > "$work/$label.wall"
}
echo "(c) firstbad run, cold (fresh ccache and cache dir)..."
CCACHE_DIR=$work/ccache-c c_run cold "$work/cache-c"
echo "(c) firstbad run, warm (a second run over the same range)..."
CCACHE_DIR=$work/ccache-c c_run warm "$work/cache-c"
# git bisect run's contract: the endpoints taken on trust, no revert check
# (the confirmation stays). Fresh caches again.
echo "(c) firstbad run, cold, --endpoint-check lazy --revert-check off..."
CCACHE_DIR=$work/ccache-l c_run lazy "$work/cache-l" --endpoint-check lazy --revert-check off
culprit=$(jq_ 'r["culprit"] or "none"' "$work/cold.json")
[ "$culprit" != none ] || { echo "firstbad found no culprit:"; tail -20 "$work/cold.log"; exit 1; }
config=$(ls -t "$work"/cache-c/artifacts/*/config | head -1)

# The git bisect run script of (a) and (b).
cat > "$work/step.sh" <<'EOF'
#!/bin/sh
# One step: build this commit (MODE clean or incremental), boot it, test.
# Appends "commit build_s boot_and_test_s" to $STEPS.
now() { date +%s.%N; }
t0=$(now)
if [ "$MODE" = clean ]; then
  img=arch/x86/boot/bzImage o=""
  make -s distclean
  cp "$CONFIG" .config
  export CCACHE_DISABLE=1
  cc=gcc
else
  img=$OUT/arch/x86/boot/bzImage o="O=$OUT"
  mkdir -p "$OUT"
  cp "$CONFIG" "$OUT/.config"
  cc="ccache gcc"
fi
built=0
make -s $o ARCH=x86_64 olddefconfig >/dev/null 2>&1 &&
  make -s $o ARCH=x86_64 CC="$cc" -j"$(nproc)" bzImage >/dev/null 2>&1 && built=1
t1=$(now)
line="$(git rev-parse HEAD) $(echo "$t1 - $t0" | bc)"
[ $built = 1 ] || { echo "$line 0" >> "$STEPS"; exit 125; }
rc=0
"$FB" --state-dir "$STATE" --cache-dir "$BOOTCACHE" boot --kernel "$img" \
  --guest-test "$TEST" --timeout 2m >/dev/null 2>&1 || rc=$?
echo "$line $(echo "$(now) - $t1" | bc)" >> "$STEPS"
exit $rc
EOF
chmod +x "$work/step.sh"

# flow label mode: git bisect run in a fresh clone; writes culprit, builds, wall.
flow() {
  local src=$work/src-$1 t0 t1
  git clone -q "$hist" "$src"
  : > "$work/steps-$1"
  t0=$(now)
  (cd "$src" && git bisect start tip base >/dev/null &&
    MODE=$2 STEPS=$work/steps-$1 CONFIG=$config OUT=$work/out-$1 FB=$fb STATE=$work/state-$1 \
      BOOTCACHE=$work/bootcache-$1 TEST=$test CCACHE_DIR=$work/ccache-$1 \
      git bisect run "$work/step.sh" > "$work/bisect-$1.log" 2>&1) || true
  t1=$(now)
  local c
  c=$(grep -o '^[0-9a-f]\{40\} is the first bad commit' "$work/bisect-$1.log" | cut -c1-40 || true)
  echo "${c:-none} $(wc -l < "$work/steps-$1") $(echo "$t1 - $t0" | bc)"
  rm -rf "$src" "$work/out-$1"
}

echo "(b) git bisect run, persistent O= build dir + ccache..."
read -r b_culprit b_builds b_wall < <(flow b incremental)

key=$( (git -C "$hist" rev-parse tip base; sha256sum < "$config"; sha256sum < "$test") | sha256sum | cut -c1-16)
a_file=bench/out/e2e-a-$key
# build-bench.sh's baseline for the same history and final .config.
bb_dir=$(baseline_dir "$hist" "$config")
if [ $skip_a = 1 ] && [ ! -s "$a_file" ]; then
  a_culprit=$b_culprit a_builds=0 a_wall=0
  a_note="not measured (--skip-a): a/c below is meaningless"
elif [ $remeasure = 0 ] && [ ! -s "$a_file" ] && [ $compose = 1 ]; then
  a_wall=0
  while read -r c _ boot; do
    [ -s "$bb_dir/$c" ] || { echo "no clean-build figure for ${c:0:12} in $bb_dir: run bench/build-bench.sh first"; exit 1; }
    a_wall=$(echo "$a_wall + $(cat "$bb_dir/$c") + $boot" | bc)
  done < "$work/steps-b"
  # Same commits as (b) by construction: the culprit check below cannot
  # test (a) then, and the note says so.
  a_culprit=$b_culprit a_builds=$b_builds
  a_note="composed: clean builds from $bb_dir + (b)'s boot+test; (b)'s steps and culprit"
else
  if [ $remeasure = 1 ] || [ ! -s "$a_file" ]; then
    echo "(a) git bisect run, clean build per step, no ccache (hours)..."
    flow a clean > "$a_file.part" && mv "$a_file.part" "$a_file"
    a_note="measured now"
  else
    a_note="cached in $a_file"
  fi
  read -r a_culprit a_builds a_wall < "$a_file"
fi

# firstbad's figures from its report: builds are the artifacts it made;
# overhead is its wall time minus every build, boot and test second.
read -r c_builds c_work c_steps c_build < <(python3 - "$work/cold.json" "$work"/cache-c/artifacts <<'EOF'
import json, os, sys
r = json.load(open(sys.argv[1]))
steps = r["endpoints"] + r["steps"]
c = r.get("confirmation") or {}
steps += [s for s in (c.get("culprit"), c.get("parent"), (c.get("revert") or {}).get("step")) if s]
work = sum((s.get(k) or 0) for s in steps for k in ("build_s", "boot_s", "test_s"))
build = sum((s.get("build_s") or 0) for s in steps)
print(len([d for d in os.listdir(sys.argv[2]) if not d.startswith(".")]), work, len(steps), build)
EOF
)
b_build=$(awk '{s += $2} END {print s}' "$work/steps-b")
c_wall=$(cat "$work/cold.wall")
w_wall=$(cat "$work/warm.wall")
w_culprit=$(jq_ 'r["culprit"] or "none"' "$work/warm.json")
overhead=$(echo "$c_wall - $c_work" | bc)

echo
printf 'history %s, %d candidates; same config and test for all flows\n' \
  "$(git -C "$hist" rev-parse --short tip)" "$(git -C "$hist" rev-list --count base..tip)"
printf '%-44s %-12s %6s %9s\n' flow culprit builds wall
printf '%-44s %-12.12s %6d %8.0fs  (%s)\n' "(a) git bisect run, clean build, no ccache" "$a_culprit" "$a_builds" "$a_wall" "$a_note"
printf '%-44s %-12.12s %6d %8.0fs\n' "(b) git bisect run, O= build dir + ccache" "$b_culprit" "$b_builds" "$b_wall"
printf '%-44s %-12.12s %6d %8.0fs  (%d kernels tested: endpoints, steps, confirmation, revert)\n' "(c) firstbad run, cold" "$culprit" "$c_builds" "$c_wall" "$c_steps"
printf '%-44s %-12.12s %6s %8.0fs\n' "(c) firstbad run, warm" "$w_culprit" - "$w_wall"
l_wall=$(cat "$work/lazy.wall")
l_culprit=$(jq_ 'r["culprit"] or "none"' "$work/lazy.json")
l_builds=$(ls "$work"/cache-l/artifacts | grep -vc '^\.' || true)
printf '%-44s %-12.12s %6d %8.0fs  (the endpoints on trust, no revert check)\n' "(c) firstbad run, cold, lazy" "$l_culprit" "$l_builds" "$l_wall"
read -r c_strategy c_search c_same < <(jq_ 'r["strategy"], len(r["steps"]), r.get("same_kernel_commits", 0)' "$work/cold.json" | tr -d '(),')
printf 'search steps: (b) git bisect %d; (c) --strategy %s %d, %s candidates never built (they change no file the builds read)\n' \
  "$b_builds" "$c_strategy" "$c_search" "$c_same"
printf 'build seconds (config + make): (b) %.0fs, (c) %.0fs; per step (b), build+boot/test: %s\n' "$b_build" "$c_build" \
  "$(awk '{printf "%s%.0f+%.0f", (NR > 1 ? ", " : ""), $2, $3}' "$work/steps-b")"
echo
same=yes
[ "$a_culprit" = "$culprit" ] && [ "$b_culprit" = "$culprit" ] && [ "$w_culprit" = "$culprit" ] && [ "$l_culprit" = "$culprit" ] || same=NO
printf 'culprits equal: %s\n' "$same"
printf 'a/c = %.2fx   b/c = %.2fx   c/b = %.2f (target <= 0.6)\n' \
  "$(echo "$a_wall / $c_wall" | bc -l)" "$(echo "$b_wall / $c_wall" | bc -l)" "$(echo "$c_wall / $b_wall" | bc -l)"
printf 'c/b with git bisect run'"'"'s contract (lazy) = %.2f\n' "$(echo "$l_wall / $b_wall" | bc -l)"
printf 'firstbad overhead: %.1fs = %.2f%% of its wall time (target < 2%%)\n' "$overhead" "$(echo "100 * $overhead / $c_wall" | bc -l)"
printf 'warm/cold: %.1f%% (target < 20%%)\n' "$(echo "100 * $w_wall / $c_wall" | bc -l)"
