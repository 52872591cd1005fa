#!/usr/bin/env bash
# toolchain-bench.sh — old kernels and toolchains of their era.
#
#   builds    builds the tip of a 5.10 history (Debian's 5.10 source package:
#             the upstream stable tree plus Debian's patches) with each
#             toolchain — the host's and build roots of trixie (gcc 14),
#             bookworm (gcc 12) and bullseye (gcc 10) — and prints what each
#             gives (built, or the error and the signature firstbad knew),
#             with each root's creation time and size;
#   overhead  the build root's own cost: the same compile with the same
#             compiler on the host and in the root of the host's release,
#             from clean, without ccache (target < 3%);
#   bisect    the story's case: the default toolchain too new for the tree
#             (trixie's root stands in for a newer host through
#             FIRSTBAD_HOST_TOOLCHAIN) fails with the diagnosis; then
#             --toolchain auto bisects the history for the change
#             examples/autogroup tests ("sched: Do not enable autogrouping
#             by default") and prints the culprit.
#
# Usage: bench/toolchain-bench.sh [-d HISTORY_DIR] [SECTION...]
#   (default: all sections; history /var/tmp/firstbad-5.10.28, made if
#   missing from upstream 5.10.28 under the patches of Debian's 5.10.223-1
#   that apply to it — the mirror keeps 5.10.28's orig tarball but not its
#   own .dsc; 8 of its 97 patches do not apply and are left out)
# Takes an hour or more on 2 cores; needs ./setup.sh (mmdebstrap, bwrap).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export PATH=$PATH:/usr/local/go/bin
hist=/var/tmp/firstbad-5.10.28
if [ "${1:-}" = -d ]; then hist=$2; shift 2; fi
sections=${*:-builds overhead bisect}
out=$PWD/bench/out/toolchain-$(date +%Y%m%d-%H%M%S) # absolute: bound into roots
mkdir -p "$out"
CGO_ENABLED=0 go build -o "$out/firstbad" ./cmd/firstbad
# One cache dir for the whole run: roots are made once, and each
# toolchain's build dir and artifacts are its own by key.
cache=${FIRSTBAD_BENCH_CACHE:-$out/cache}
fb() { "$out/firstbad" --state-dir "$out/state" --cache-dir "$cache" "$@"; }
frag=examples/autogroup/kconfig

[ -e "$hist/.git" ] || examples/make-kernel-history.sh "$hist" 5.10.223-1 5.10.28
echo "history: $(git -C "$hist" log -1 --format=%s base), $(git -C "$hist" rev-list --count base..tip) patches"

builds() {
  echo
  echo "== tip built with each toolchain =="
  local tc name t0 t1
  for tc in host debian:trixie debian:bookworm debian:bullseye; do
    name=${tc//[:\/]/-}
    t0=$(now)
    fb --json build --repo "$hist" tip --kconfig "$frag" --toolchain "$tc" > "$out/build-$name.json" 2> "$out/build-$name.err" || true
    t1=$(now)
    python3 - "$out/build-$name.json" "$out/build-$name.err" "$tc" "$(echo "$t1 - $t0" | bc)" <<'PY'
import json, sys
jf, ef, tc, secs = sys.argv[1:]
try:
    r = json.load(open(jf))
except Exception:
    r = {}
err = open(ef).read().strip().splitlines()
msg = r.get("reason") or r.get("error") or (err[-1] if err else "")
print(f"{tc:18} {r.get('verdict') or 'error':6} {float(secs):7.0f} s  {r.get('toolchain','')}")
if r.get("verdict") != "ok":
    print(f"{'':18} {str(msg)[:400]}")
if r.get("fixes"):
    print(f"{'':18} fixes applied: {r['fixes']}")
PY
  done
  for m in "$cache"/roots/*/.firstbad-root; do
    [ -e "$m" ] && python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); r, s, b = m["release"], m["seconds"], m["bytes"] >> 20; print(f"root {r}: made in {s:.0f} s, {b} MiB")' "$m"
  done
}

# overhead: kernel/ and mm/ of the history's tip compiled from clean with
# the host's gcc and with the same gcc in the host release's root (make
# straight, no ccache: the root's cost is per process and per file lookup).
overhead() {
  echo
  echo "== build root overhead: host vs its own release's root, same gcc, clean, no ccache =="
  local host root src t0 t1 a b
  host=$(. /etc/os-release; echo "$VERSION_CODENAME")
  fb --json build --repo "$hist" base --kconfig "$frag" --toolchain "debian:$host" >/dev/null 2>&1 || true # makes the root
  root=$(ls -d "$cache"/roots/"$host"-*[0-9a-f] | head -n 1)
  src=$out/overhead-src
  git clone -q --shared --no-checkout "$hist" "$src" && git -C "$src" checkout -q base
  # Two rounds, alternating, the best of each: this machine is shared.
  t_host=999999 t_root=999999
  for round in 1 2; do
    for where in host root; do
      rm -rf "$out/o-$where"
      local run=()
      [ "$where" = root ] && run=(bwrap --bind "$root" / --dev /dev --proc /proc --tmpfs /tmp --bind "$src" "$src" --bind "$out" "$out" --)
      "${run[@]}" make -s -C "$src" O="$out/o-$where" tinyconfig >/dev/null
      t0=$(now)
      "${run[@]}" make -s -C "$src" O="$out/o-$where" -j"$(nproc)" kernel/ mm/ >/dev/null 2>&1
      t1=$(now)
      local t
      t=$(echo "$t1 - $t0" | bc)
      echo "round $round, $where: $t s ($("${run[@]}" gcc --version | head -n 1))"
      if [ "$(echo "$t < $(eval echo "\$t_$where")" | bc)" = 1 ]; then eval "t_$where=$t"; fi
    done
  done
  printf 'build root overhead (best of 2 each): %.1f%%\n' "$(echo "($t_root - $t_host) * 100 / $t_host" | bc -l)"
}

bisect() {
  echo
  echo "== the default toolchain too new (trixie's root as the host; no build fixes) =="
  local rc=0
  FIRSTBAD_HOST_TOOLCHAIN=debian:trixie fb run --repo "$hist" --good base --bad tip --guest-test examples/autogroup/test.sh \
    --kconfig "$frag" --timeout 2m --no-build-fixes > "$out/default.out" 2> "$out/default.err" || rc=$?
  echo "exit $rc: $(grep -m1 -A3 'too new' "$out/default.err" || tail -n 3 "$out/default.err")"
  echo
  echo "== bisect with --toolchain auto (the same stand-in host) =="
  local t0 t1
  t0=$(now)
  FIRSTBAD_HOST_TOOLCHAIN=debian:trixie fb --json run --repo "$hist" --good base --bad tip --guest-test examples/autogroup/test.sh \
    --kconfig "$frag" --toolchain auto --timeout 2m > "$out/bisect.json" 2> "$out/bisect.err" || true
  t1=$(now)
  python3 - "$out/bisect.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
steps = r.get("endpoints", []) + r.get("steps", [])
subject = {s["commit"]: s["subject"] for s in steps}
c = r.get("culprit") or ""
print("outcome:", r.get("outcome"), "culprit:", c[:12], subject.get(c, ""), r.get("message", ""))
for s in steps:
    tc = (s.get("evidence") or {}).get("toolchain", "")
    print(f"  {s['commit'][:12]} {s['verdict']:5} build {s.get('build_s') or 0:5.0f} s  boot {s.get('boot_s') or 0:4.1f} s  {tc[:32]:32}  {s['subject'][:48]}")
PY
  echo "bisect: $(echo "$t1 - $t0" | bc) s"
}

for s in $sections; do "$s"; done
echo "reports and logs in $out"
