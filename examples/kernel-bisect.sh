#!/usr/bin/env bash
# kernel-bisect.sh — the kernel quick start: make a real kernel history (the
# upstream 6.1 stable tree plus Debian's patch series, one commit per patch;
# ~3 minutes, ~2 GiB, once) and let firstbad find the commit that turned
# scheduler autogrouping off by default.
#
# Usage: examples/kernel-bisect.sh [HISTORY_DIR]  (default ~/.cache/firstbad-example/linux)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
firstbad=$(command -v firstbad || echo "$here/../bin/firstbad")
dir=${1:-$HOME/.cache/firstbad-example/linux}
if ! git -C "$dir" rev-parse -q --verify tip >/dev/null 2>&1; then
  "$here/make-kernel-history.sh" "$dir"
fi
exec "$firstbad" run --repo "$dir" --good base --bad tip \
  --guest-test "$here/autogroup/test.sh" --kconfig "$here/autogroup/kconfig" --timeout 2m
