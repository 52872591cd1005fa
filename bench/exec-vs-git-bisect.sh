#!/usr/bin/env bash
# exec-vs-git-bisect.sh — firstbad run --exec against git bisect run on the
# same repository and reproducer; prints wall times, their ratio, the steps
# each took, and firstbad's own per-step overhead (wall time minus the time
# the reproducer ran, per step).
#
# Usage: bench/exec-vs-git-bisect.sh [COMMITS] [TRIALS]   (default 1000 5)
#        bench/exec-vs-git-bisect.sh 100000 3             (the scale case:
#        target firstbad <= git's wall time, status under 0.3 s)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
trials=${2:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PATH=$PATH:/usr/local/go/bin

CGO_ENABLED=0 go build -o "$work/firstbad" ./cmd/firstbad

# A history of $n commits: a main line with side branches merged back.
python3 - "$n" > "$work/stream" <<'PY'
import sys
n = int(sys.argv[1]); t = 1700000000; out = []; mark = 0; main = None; side = None
def commit(parents, msg):
    global mark, t
    mark += 1; t += 60
    out.append(f"commit refs/heads/main\nmark :{mark}\ncommitter B <b@example.com> {t} +0000\ndata {len(msg)}\n{msg}\n")
    if parents: out.append(f"from :{parents[0]}\n")
    for p in parents[1:]: out.append(f"merge :{p}\n")
    out.append(f"M 100644 inline f\ndata {len(str(mark))}\n{mark}\n\n")
    return mark
main = commit([], "root")
while mark < n:
    if mark % 10 == 3: side = main
    if side is not None and mark % 10 in (4, 5, 6): side = commit([side], f"side {mark}")
    elif side is not None and mark % 10 == 7: main = commit([main, side], f"merge {mark}"); side = None
    else: main = commit([main], f"main {mark}")
print("".join(out), end="")
PY
git init -q "$work/repo"
git -C "$work/repo" fast-import --quiet < "$work/stream"
git -C "$work/repo" checkout -q -f main
mapfile -t all < <(git -C "$work/repo" rev-list --reverse main)
root=${all[0]}
tip=${all[-1]}
echo "history: $(git -C "$work/repo" rev-list --count main) commits, $(git -C "$work/repo" rev-list --merges --count main) merges"

now() { date +%s.%N; }
git_total=0 fb_total=0 fb_test=0 fb_steps=0 git_steps=0
for i in $(seq 1 "$trials"); do
  culprit=${all[$(( (i * 7919) % (${#all[@]} - 2) + 1 ))]}
  script="git merge-base --is-ancestor $culprit HEAD && exit 1; exit 0"

  git clone -q "$work/repo" "$work/g$i"
  t0=$(now)
  (cd "$work/g$i" && git bisect start "$tip" "$root" >/dev/null && git bisect run sh -c "$script" > "$work/g$i.out" 2>&1)
  t1=$(now)
  found=$(grep -o '^[0-9a-f]\{40\} is the first bad commit' "$work/g$i.out" | cut -c1-40)
  steps=$(grep -c '^running' "$work/g$i.out")

  t2=$(now)
  "$work/firstbad" --state-dir "$work/state" --cache-dir "$work/cache" --json run --repo "$work/repo" \
     --good "$root" --bad "$tip" --exec "$script" > "$work/f$i.json" 2>/dev/null
  t3=$(now)
  read -r fculprit fsteps ftest < <(python3 -c '
import json,sys; r=json.load(open(sys.argv[1]))
print(r["culprit"], len(r["steps"]), sum(s["test_s"] or 0 for s in r["steps"]))' "$work/f$i.json")

  [ "$found" = "$culprit" ] && [ "$fculprit" = "$culprit" ] || { echo "trial $i: wrong culprit (git $found, firstbad $fculprit, want $culprit)"; exit 1; }
  g=$(echo "$t1 - $t0" | bc); f=$(echo "$t3 - $t2" | bc)
  printf 'trial %d: culprit %.12s  git bisect run %5.2fs %2d steps | firstbad %5.2fs %2d steps\n' "$i" "$culprit" "$g" "$steps" "$f" "$fsteps"
  git_total=$(echo "$git_total + $g" | bc); fb_total=$(echo "$fb_total + $f" | bc)
  fb_test=$(echo "$fb_test + $ftest" | bc); fb_steps=$((fb_steps + fsteps)); git_steps=$((git_steps + steps))
done
echo
printf 'git bisect run: %.2fs for %d steps\n' "$git_total" "$git_steps"
printf 'firstbad run:   %.2fs for %d steps (first run includes making its clone)\n' "$fb_total" "$fb_steps"
printf 'ratio firstbad/git: %.2f\n' "$(echo "$fb_total / $git_total" | bc -l)"
printf 'firstbad overhead per step (wall - reproducer time): %.1f ms\n' "$(echo "($fb_total - $fb_test) * 1000 / $fb_steps" | bc -l)"
for cmd in status "report --format json" "report --format md" log list; do
  t0=$(now)
  # shellcheck disable=SC2086
  "$work/firstbad" --state-dir "$work/state" --cache-dir "$work/cache" $cmd > /dev/null 2>&1
  t1=$(now)
  printf 'firstbad %-20s %.3fs\n' "$cmd:" "$(echo "$t1 - $t0" | bc)"
done
