#!/usr/bin/env bash
# make-kernel-history.sh — build a real Linux kernel git history (for the
# quick start, tests and benchmarks) from Debian's kernel source package.
#
# There is no network access to kernel.org or GitHub here, but Debian's source
# package for the kernel is reachable. It holds the upstream stable tarball plus
# the Debian kernel team's patch series (bugfixes, backports, hardening defaults),
# each patch written by kernel developers. This script turns it into a git repo:
#
#   commit 0   "Linux upstream orig"   (tag: base)   the upstream 6.1.x tree
#   commit 1.. one commit per patch in debian/patches/series, in series order,
#              authored as the patch's From: line, subject from its Subject: line
#   last       (tag: tip)
#
# Usage: make-kernel-history.sh OUT_DIR [DEBIAN_VERSION]
#   OUT_DIR          where the git repo is created (replaced if it exists)
#   DEBIAN_VERSION   source package version (default 6.1.176-1; ~165 patches)
#
# Needs: apt source access (the script adds deb-src entries mirroring the
# machine's existing deb entries), patch, git, xz. Takes ~2 minutes and ~2 GiB.
# Example behaviour changes you can bisect for, in this default history:
#   "sched: Do not enable autogrouping by default"
#     -> /proc/sys/kernel/sched_autogroup_enabled reads 0 instead of 1
#        (needs CONFIG_SCHED_AUTOGROUP=y, CONFIG_PROC_SYSCTL=y)
set -euo pipefail

out=${1:?usage: make-kernel-history.sh OUT_DIR [DEBIAN_VERSION]}
ver=${2:-6.1.176-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. make sure deb-src entries exist (copy the URIs of the existing deb entries)
versions=$(apt-cache showsrc linux 2>/dev/null | grep '^Version:' || true)
if ! grep -qx "Version: $ver" <<<"$versions"; then
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    sed 's/^Types: deb$/Types: deb-src/' "$src" > /etc/apt/sources.list.d/kernel-history-src.sources
  fi
  apt-get update -qq
fi

# 2. download the source package (orig tarball + debian tarball), unpack the debian dir
(cd "$work" && apt-get source -qq --download-only "linux=$ver" >/dev/null)
tar xf "$work"/linux_*.debian.tar.xz -C "$work"

# 3. the upstream tree as the first commit
rm -rf "$out"; mkdir -p "$out"
tar xf "$work"/linux_*.orig.tar.xz -C "$out" --strip-components=1
cd "$out"
git init -q -b main
git config user.name "kernel-history"
git config user.email "kernel-history@localhost"
git add -A >/dev/null
GIT_AUTHOR_DATE="2025-01-01T00:00:00Z" GIT_COMMITTER_DATE="2025-01-01T00:00:00Z" \
  git commit -q -m "Linux upstream orig ($ver)"
git tag base

# 4. one commit per patch
n=0
grep -v '^#' "$work/debian/patches/series" | sed 's/ .*//' | grep . | while read -r p; do
  f="$work/debian/patches/$p"
  subj=$(grep -m1 -i '^Subject:' "$f" | sed 's/^Subject: *//; s/^\[PATCH[^]]*\] *//' || true)
  [ -n "$subj" ] || subj="$p"
  author=$(grep -m1 -i '^From:' "$f" | sed 's/^From: *//' || true)
  patch -p1 -s -f --no-backup-if-mismatch < "$f" >/dev/null || { echo "patch failed: $p" >&2; exit 1; }
  git add -A >/dev/null
  n=$((n+1))
  d=$(date -u -d "2025-01-01 + $n hours" +%Y-%m-%dT%H:%M:%SZ)
  args=(-q --allow-empty -m "$subj" -m "Debian patch: $p")
  [[ "$author" == *"<"*">"* ]] && args+=(--author="$author")
  GIT_AUTHOR_DATE=$d GIT_COMMITTER_DATE=$d git commit "${args[@]}"
done
git tag tip
echo "history ready: $out ($(git rev-list --count HEAD) commits, base..tip)"
