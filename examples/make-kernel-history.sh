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
# Usage: make-kernel-history.sh OUT_DIR [DEBIAN_VERSION [UPSTREAM_VERSION]]
#   OUT_DIR          where the git repo is created (replaced if it exists)
#   DEBIAN_VERSION   source package version (default 6.1.176-1; ~165 patches)
#   UPSTREAM_VERSION an older upstream tree of the same line under that
#                    version's patches (e.g. 5.10.223-1 5.10.28: Debian's
#                    mirror keeps old orig tarballs but drops old .dsc files);
#                    patches that do not apply to it are left out and listed
#
# Needs: apt source access (the script adds deb-src entries for the release
# that has DEBIAN_VERSION, each in its own list file, mirroring the machine's
# deb entries; as root or through sudo), patch, git, xz. Takes ~2 minutes and
# ~2 GiB. Older lines work too, e.g. 5.10.223-1 (bullseye) for an LTS history,
# or 5.10.223-1 5.10.28 for an early 5.10 tree (bench/toolchain-bench.sh).
# Example behaviour changes you can bisect for, in this default history:
#   "sched: Do not enable autogrouping by default"
#     -> /proc/sys/kernel/sched_autogroup_enabled reads 0 instead of 1
#        (needs CONFIG_SCHED_AUTOGROUP=y, CONFIG_PROC_SYSCTL=y)
set -euo pipefail

out=${1:?usage: make-kernel-history.sh OUT_DIR [DEBIAN_VERSION [UPSTREAM_VERSION]]}
ver=${2:-6.1.176-1}
upstream=${3:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. make sure the source package is known: deb-src entries for the release
# that has it, each in its own list file (the machine's own lists are never
# edited), mirroring the URIs of the machine's deb entries.
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
# (grep without -q: an early exit would fail the pipe under pipefail)
known() { apt-cache showsrc linux 2>/dev/null | grep -x "Version: $ver" >/dev/null; }
# has_src: some list already has deb-src entries for the release (one-line
# or deb822 stanzas; a second entry for the same suite makes apt warn)
has_src() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && { cat "$f"; echo; }
  done |
    awk -v r="$1" '
      /^deb-src / { for (i = 3; i <= NF; i++) if ($i == r) found = 1 }
      /^$/ { if (src && suite) found = 1; src = suite = 0; next }
      /^Types:/ && / deb-src/ { src = 1 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == r) suite = 1 }
      END { if (src && suite) found = 1; exit !found }'
}
add_src() { # RELEASE
  local list=/etc/apt/sources.list.d/firstbad-$1-src.sources
  [ -f "$list" ] && return 1
  has_src "$1" && return 1
  local uri signed
  uri=$(grep -rhs '^URIs:' /etc/apt/sources.list.d/debian.sources | head -n 1 | awk '{print $2}')
  signed=$(grep -rhs '^Signed-By:' /etc/apt/sources.list.d/debian.sources | head -n 1 | awk '{print $2}')
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
    "${uri:-http://deb.debian.org/debian}" "$1" "${signed:-/usr/share/keyrings/debian-archive-keyring.gpg}" | $sudo tee "$list" >/dev/null
}
if ! known; then
  # The release whose kernel line this is, then the others.
  case $ver in
    5.10.*) releases="bullseye bookworm trixie" ;;
    6.12.*) releases="trixie bookworm bullseye" ;;
    *) releases="bookworm bullseye trixie" ;;
  esac
  for r in $releases; do
    add_src "$r" || continue
    $sudo apt-get update -qq
    known && break
  done
  known || { echo "make-kernel-history: no source package linux=$ver in $releases" >&2; exit 1; }
fi

# 2. download the source package (orig tarball + debian tarball), unpack the debian dir
(cd "$work" && apt-get source -qq --download-only "linux=$ver" >/dev/null)
tar xf "$work"/linux_*.debian.tar.xz -C "$work"
if [ -n "$upstream" ]; then
  # The older tree's orig tarball sits beside this version's in the pool.
  # (asked from an empty dir: apt prints no URI for a file already here)
  uri=$(cd "$(mktemp -d -p "$work")" && apt-get source -qq --print-uris "linux=$ver" | grep -o "'[^']*orig.tar.xz'" | tr -d "'")
  rm -f "$work"/linux_*.orig.tar.xz
  (cd "$work" && curl -fsSLO "${uri%/*}/linux_$upstream.orig.tar.xz") ||
    { echo "make-kernel-history: no linux_$upstream.orig.tar.xz at ${uri%/*}" >&2; exit 1; }
fi

# 3. the upstream tree as the first commit
rm -rf "$out"; mkdir -p "$out"
tar xf "$work"/linux_*.orig.tar.xz -C "$out" --strip-components=1
cd "$out"
git init -q -b main
git config user.name "kernel-history"
git config user.email "kernel-history@localhost"
git add -A >/dev/null
GIT_AUTHOR_DATE="2025-01-01T00:00:00Z" GIT_COMMITTER_DATE="2025-01-01T00:00:00Z" \
  git commit -q -m "Linux upstream orig (${upstream:-$ver})"
git tag base

# 4. one commit per patch
n=0
grep -v '^#' "$work/debian/patches/series" | sed 's/ .*//' | grep . | while read -r p; do
  f="$work/debian/patches/$p"
  subj=$(grep -m1 -i '^Subject:' "$f" | sed 's/^Subject: *//; s/^\[PATCH[^]]*\] *//' || true)
  [ -n "$subj" ] || subj="$p"
  author=$(grep -m1 -i '^From:' "$f" | sed 's/^From: *//' || true)
  if ! patch -p1 -s -f --dry-run < "$f" >/dev/null 2>&1; then
    # Only with an older upstream tree: its patches may not fit.
    [ -n "$upstream" ] || { echo "patch failed: $p" >&2; exit 1; }
    echo "left out (does not apply to $upstream): $p" >&2
    continue
  fi
  patch -p1 -s -f --no-backup-if-mismatch < "$f" >/dev/null
  git add -A >/dev/null
  n=$((n+1))
  d=$(date -u -d "2025-01-01 + $n hours" +%Y-%m-%dT%H:%M:%SZ)
  args=(-q --allow-empty -m "$subj" -m "Debian patch: $p")
  [[ "$author" == *"<"*">"* ]] && args+=(--author="$author")
  GIT_AUTHOR_DATE=$d GIT_COMMITTER_DATE=$d git commit "${args[@]}"
done
git tag tip
echo "history ready: $out ($(git rev-list --count HEAD) commits, base..tip)"
