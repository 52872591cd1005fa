#!/usr/bin/env bash
# boot-bench.sh — per-run cost of boot + trivial guest test under QEMU, per
# guest root (--rootfs): boot-to-test-start (QEMU start to the agent's start
# marker, which includes putting the guest's root together: the host's
# root or a Debian root over 9p or virtiofs, or a disk image's root file system, with
# the overlay), the test's own time, the whole command's wall time, and the
# harness's own share (everything that is not QEMU booting the kernel or
# the test running: firstbad start-up, initramfs overlay, QEMU start-up and
# power-off, classification). The ", git" and ", python3" rows run a
# program of the root's instead of `exit 0`.
#
# Usage: bench/boot-bench.sh BZIMAGE [RUNS]   (default 10 runs per row)
# The kernel needs the rootfs-host and rootfs-image options (the test
# kernel has them). The Debian root (bookworm + python3-minimal, systemd-sysv) is made
# once in $FIRSTBAD_BENCH_CACHE (default: the test root's cache, where the
# tests make the same root); the image rows use that root as an ext4 disk
# image, raw and qcow2. The virtiofs rows run virtiofsd from a Debian
# trixie root made once in the same cache (Debian 12 has no virtiofsd).
set -euo pipefail
cd "$(dirname "$0")/.."
kernel=${1:?usage: bench/boot-bench.sh BZIMAGE [RUNS]}
runs=${2:-10}
export PATH=$PATH:/usr/local/go/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/firstbad" ./cmd/firstbad
printf 'exit 0\n' > "$work/t.sh"
printf 'git --version >/dev/null\n' > "$work/git.sh"
printf 'python3 -c pass\n' > "$work/py.sh"
cache=${FIRSTBAD_BENCH_CACHE:-${FIRSTBAD_TEST_ROOT:-/var/tmp/firstbad-test}/cache}
fb() { "$work/firstbad" --state-dir "$work/state" --cache-dir "$cache" "$@"; }
fb --json boot --kernel "$kernel" --guest-test "$work/t.sh" --accel tcg > /dev/null   # warm: initramfs cache

# row NAME ROOTFS TEST [SHARE]: RUNS boots, then one line of means.
row() {
  local name=$1 rootfs=$2 test=$3 share=${4:-9p} tw=0 tb=0 tt=0
  for i in $(seq 1 "$runs"); do
    t0=$(date +%s.%N)
    fb --json boot --kernel "$kernel" --rootfs "$rootfs" --rootfs-share "$share" --guest-test "$test" --accel tcg > "$work/r.json"
    t1=$(date +%s.%N)
    read -r v b t < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["verdict"], r["boot_s"], r["test_s"])' "$work/r.json")
    [ "$v" = good ] || { echo "$name: run $i was $v" >&2; exit 1; }
    w=$(echo "$t1 - $t0" | bc)
    tw=$(echo "$tw + $w" | bc); tb=$(echo "$tb + $b" | bc); tt=$(echo "$tt + $t" | bc)
  done
  printf '%-16s %8.2fs %16.2fs %8.3fs %10.2fs\n' "$name" "$(echo "$tw / $runs" | bc -l)" "$(echo "$tb / $runs" | bc -l)" \
    "$(echo "$tt / $runs" | bc -l)" "$(echo "($tw - $tb - $tt) / $runs" | bc -l)"
}
printf '%-16s %9s %17s %9s %11s   (means of %d runs, TCG)\n' rootfs wall boot-to-test-start test harness "$runs"
row busybox busybox "$work/t.sh"
row "host (9p)" host "$work/t.sh"
row "host (9p), git" host "$work/git.sh"
fb --json boot --kernel "$kernel" --rootfs host --rootfs-share virtiofs --guest-test "$work/t.sh" --accel tcg > /dev/null   # makes the virtiofsd root once
row "host (virtiofs)" host "$work/t.sh" virtiofs
row "host (vfs), git" host "$work/git.sh" virtiofs
debian=debian:bookworm+python3-minimal,systemd-sysv
fb --json boot --kernel "$kernel" --rootfs "$debian" --guest-test "$work/t.sh" --accel tcg > "$work/r.json"   # makes the root once
root=$(python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))["guest_root"]; print(g[g.rindex(": ")+2:].split(",")[0])' "$work/r.json")
truncate -s 1G "$work/disk.img"
echo 'start=2048, type=83' | sfdisk -q "$work/disk.img"
mkfs.ext4 -q -F -E offset=1048576 -d "$root" "$work/disk.img" 1046528K
qemu-img convert -O qcow2 "$work/disk.img" "$work/disk.qcow2"
row "debian (9p)" "$debian" "$work/t.sh"
row "debian, python3" "$debian" "$work/py.sh"
row "debian (vfs)" "$debian" "$work/t.sh" virtiofs
row "debian (vfs), py3" "$debian" "$work/py.sh" virtiofs
row "image (raw)" "image:$work/disk.img" "$work/t.sh"
row "image (qcow2)" "image:$work/disk.qcow2" "$work/t.sh"
row "image, python3" "image:$work/disk.qcow2" "$work/py.sh"
