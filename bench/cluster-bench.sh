#!/usr/bin/env bash
# cluster-bench.sh — what sharing builds across machines buys, measured on
# this one machine with real daemons on loopback (a distccd, a redis, an
# nginx with WebDAV). A 2-core machine cannot be sped up by a cluster of
# itself, so it measures what can be:
#
#   1. the cluster's overhead: the same rebuild (a new line in
#      include/linux/freezer.h: ~56 objects of the test kernel, all ccache
#      misses) here and through a one-node distccd on loopback, twice each,
#      alternating; the per-object time of each
#   2. the team ccache: a first machine's cold build of the history's tip
#      (fresh cache dir, empty local ccache, the team ccache empty: it fills
#      it), then a second machine's (fresh cache dir, its own empty local
#      ccache): time and hit rate
#   3. the artifact store: a third machine's build of that kernel (fetched),
#      and a bisect over a short range on top of tip (a planted change)
#      by the first machine, then by the third through the store
#
# Usage: bench/cluster-bench.sh [TEST_ROOT]   (default /var/tmp/firstbad-test:
# the test kernel's history, config and cache dir; go run
# ./internal/testkernel/prepare makes them). ~40 min here; results in
# bench/out/cluster-<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
root=$(realpath "${1:-${FIRSTBAD_TEST_ROOT:-/var/tmp/firstbad-test}}")
hist=$root/linux frag=$root/test.config shared=$root/cache
[ -d "$hist/.git" ] && [ -f "$frag" ] || { echo "no test kernel in $root: go run ./internal/testkernel/prepare" >&2; exit 2; }
for p in distccd redis-server nginx ccache; do command -v $p >/dev/null || { echo "$p missing: ./setup.sh" >&2; exit 2; }; done
export PATH=$PATH:/usr/local/go/bin
work=$(mktemp -d /var/tmp/firstbad-cluster.XXXXXX)
chmod 755 "$work"
keep=bench/out/cluster-$(date +%Y%m%d-%H%M%S)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done
  mkdir -p "$keep"; cp "$work"/*.json "$work"/*.log "$keep"/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$work/firstbad" ./cmd/firstbad
fb=$work/firstbad
j() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($1)" "$2"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "nothing on port $1" >&2; exit 1; }
daemon() { setsid "$@" > "$work/daemon-$1.log" 2>&1 & pids+=($!); }

# The daemons. distccd drops root for its own user: its log dir is open.
mkdir -m 1777 "$work/distccd"
dport=$(port); TMPDIR=$work/distccd daemon distccd --no-detach --daemon --allow 127.0.0.1 --listen 127.0.0.1 --port "$dport" \
  --log-file "$work/distccd/distccd.log" --log-level info --jobs "$(nproc)"; waitport "$dport"
rport=$(port); daemon redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work"; waitport "$rport"
sport=$(port); mkdir -p "$work/store" "$work/nginx/tmp"
cat > "$work/nginx/nginx.conf" <<EOF
daemon off; master_process off; user root; pid $work/nginx/pid; error_log $work/nginx/error.log;
events {}
http { access_log off; client_body_temp_path $work/nginx/tmp;
  server { listen 127.0.0.1:$sport; root $work/store; client_max_body_size 0;
    location / { dav_methods PUT DELETE; create_full_put_path on; } } }
EOF
daemon nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log"; waitport "$sport"
store=http://127.0.0.1:$sport/kernels remote=redis://127.0.0.1:$rport

# commit PARENT MSG FILE LINE: a commit adding LINE to FILE (the repo's
# index and work tree untouched).
commit() {
  local idx=$work/index blob
  GIT_INDEX_FILE=$idx git -C "$hist" read-tree "$1"
  blob=$( (git -C "$hist" show "$1:$3"; echo "$4") | git -C "$hist" hash-object -w --stdin)
  GIT_INDEX_FILE=$idx git -C "$hist" update-index --cacheinfo "100644,$blob,$3"
  GIT_INDEX_FILE=$idx git -C "$hist" commit-tree "$(GIT_INDEX_FILE=$idx git -C "$hist" write-tree)" -p "$1" -m "$2"
}
# build NAME CACHEDIR REF ARGS...: firstbad build --json, its wall seconds.
build() {
  local name=$1 cache=$2 ref=$3 t0; shift 3
  t0=$(now)
  "$fb" --state-dir "$work/state" --cache-dir "$cache" --json build --repo "$hist" "$ref" --kconfig "$frag" "$@" \
    > "$work/$name.json" 2> "$work/$name.log"
  python3 -c "print(f'{$(now) - $t0:.1f}')" > "$work/$name.wall"
}
wall() { cat "$work/$1.wall"; }
nonce=$(date +%s%N)

echo "== 1. the cluster's overhead (include/linux/freezer.h: each build ~56 objects, all ccache misses)"
for round in 1 2; do
  for how in local cluster; do
    c=$(commit tip "bench $how $round" include/linux/freezer.h "/* cluster-bench $nonce $how $round */")
    args=(); [ $how = cluster ] && args=(--cluster "distcc:127.0.0.1:$dport/$(nproc)")
    build "$how-$round" "$shared" "$c" "${args[@]}"
    printf '  %-8s round %d: %6s s, %s objects compiled%s\n' $how $round "$(wall $how-$round)" \
      "$(j 'r["compiled"]' "$work/$how-$round.json")" "$(j '"; " + r.get("cluster", "") if r.get("cluster") else ""' "$work/$how-$round.json")"
  done
done
sent=$(grep -c COMPILE_OK "$work/distccd/distccd.log" || true)
python3 - "$work" "$sent" <<'EOF'
import json, sys
w, sent = sys.argv[1], int(sys.argv[2])
t = {h: [float(open(f"{w}/{h}-{r}.wall").read()) for r in (1, 2)] for h in ("local", "cluster")}
n = {h: [json.load(open(f"{w}/{h}-{r}.json"))["compiled"] for r in (1, 2)] for h in ("local", "cluster")}
l, c = sum(t["local"]), sum(t["cluster"])
print(f"  local {l:.0f} s, through the cluster {c:.0f} s: overhead {100*(c/l-1):+.1f}% (target < 10%); "
      f"{sent} compiles went to distccd; per object {l/sum(n['local']):.2f} s here, {c/sum(n['cluster']):.2f} s through it")
EOF

echo "== 2. the team ccache: cold builds of tip on fresh machines"
export CCACHE_DIR=$work/ccache-a
build first "$work/machine-a" tip --ccache-remote "$remote" --artifact-store "$store"
echo "  first machine, empty caches (fills the team ccache): $(wall first) s, $(j 'r["compiled"]' "$work/first.json") objects"
export CCACHE_DIR=$work/ccache-b
build second "$work/machine-b" tip --ccache-remote "$remote"
echo "  second machine, its own empty local ccache: $(wall second) s, $(j 'r["compiled"]' "$work/second.json") objects, $(j 'r.get("ccache_remote_hits", 0)' "$work/second.json") remote hits (the objects and the config's compiler probes)"
unset CCACHE_DIR

echo "== 3. the artifact store"
build third "$work/machine-c" tip --artifact-store "$store"
echo "  third machine, the kernel from the store: $(wall third) s (cached: $(j 'r["cached"]' "$work/third.json"); clone, checkout, config, fetch)"
# A short range on tip with a planted change: autogrouping on (good), two
# unrelated commits, autogrouping off (the culprit), one more.
on=$(git -C "$hist" show tip:kernel/sched/autogroup.c | sed 's/sysctl_sched_autogroup_enabled = 0;/sysctl_sched_autogroup_enabled = 1;/')
idx=$work/index2
GIT_INDEX_FILE=$idx git -C "$hist" read-tree tip
blob=$(echo "$on" | git -C "$hist" hash-object -w --stdin)
GIT_INDEX_FILE=$idx git -C "$hist" update-index --cacheinfo "100644,$blob,kernel/sched/autogroup.c"
good=$(GIT_INDEX_FILE=$idx git -C "$hist" commit-tree "$(GIT_INDEX_FILE=$idx git -C "$hist" write-tree)" -p tip -m "bench: autogroup on $nonce")
c1=$(commit "$good" "bench: a line in calibrate.c" init/calibrate.c "/* cluster-bench $nonce */")
c2=$(commit "$c1" "bench: a line in reboot.c" kernel/reboot.c "/* cluster-bench $nonce */")
GIT_INDEX_FILE=$idx git -C "$hist" read-tree "$c2"
blob=$(git -C "$hist" show tip:kernel/sched/autogroup.c | git -C "$hist" hash-object -w --stdin)
GIT_INDEX_FILE=$idx git -C "$hist" update-index --cacheinfo "100644,$blob,kernel/sched/autogroup.c"
culprit=$(GIT_INDEX_FILE=$idx git -C "$hist" commit-tree "$(GIT_INDEX_FILE=$idx git -C "$hist" write-tree)" -p "$c2" -m "bench: autogroup off $nonce")
bad=$(commit "$culprit" "bench: a line in panic.c" kernel/panic.c "/* cluster-bench $nonce */")
bisect() { # NAME CACHEDIR
  local t0; t0=$(now)
  "$fb" --state-dir "$work/state-$1" --cache-dir "$2" --json run --repo "$hist" --good "$good" --bad "$bad" \
    --guest-test examples/autogroup/test.sh --kconfig "$frag" --artifact-store "$store" --timeout 2m \
    --endpoint-check lazy --confirm=false --revert-check off > "$work/$1.json" 2> "$work/$1.log" || true
  python3 -c "print(f'{$(now) - $t0:.1f}')" > "$work/$1.wall"
  python3 - "$work/$1.json" "$culprit" "$(wall "$1")" "$1" <<'EOF'
import json, sys
r, want, wall, name = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3]), sys.argv[4]
steps = r.get("steps", [])
built = sum(1 for s in steps if (s.get("build_s") or 0) > 5)
print(f"  {name}: {wall:.0f} s, culprit {'right' if r.get('culprit') == want else 'WRONG: ' + str(r.get('culprit'))}, "
      f"{len(steps)} steps, build seconds {sum(s.get('build_s') or 0 for s in steps):.0f} ({built} steps over 5 s)")
EOF
}
bisect bisect-first "$work/machine-a"
bisect bisect-third "$work/machine-c"
