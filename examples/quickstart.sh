#!/usr/bin/env bash
# quickstart.sh — make a small repository whose commit 37 broke "make test",
# and let firstbad find it. Everything happens in a temp dir.
set -euo pipefail
firstbad=$(command -v firstbad || echo "$(dirname "$0")/../bin/firstbad")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git init -q -b main "$work/repo"
cd "$work/repo"
git config user.name demo; git config user.email demo@example.com
printf 'test:\n\t@test "$$(cat version)" -lt 37\n' > Makefile
for i in $(seq 0 60); do
  echo "$i" > version
  git add -A; git commit -q -m "release step $i"
done

"$firstbad" --state-dir "$work/state" --cache-dir "$work/cache" \
  run --repo "$work/repo" --good HEAD~60 --bad main --exec 'make -s test'
