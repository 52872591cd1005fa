#!/bin/sh
# scp-loop: the reproducer from the story behind firstbad, as a host test.
# It copies a large file from the host into the guest again and again, each
# copy under its own deadline; a copy that stalls means the guest's network
# hung: bad. All copies done: good.
#
#   firstbad test --repo LINUX HEAD --host-test examples/scp-loop/host-test.sh --timeout 30m
#
# Tune with the environment: SIZE_MIB (default 1024), COPIES (default 3),
# COPY_TIMEOUT seconds per copy (default: 4x what the first copy took,
# at least 60). Under TCG a copy runs at ~15-20 MB/s on the project's
# machine (see the README), so give firstbad's --timeout room for all copies.
set -u
size=${SIZE_MIB:-1024}
copies=${COPIES:-3}
file=${TMPDIR:-/tmp}/firstbad-scp-loop-${size}MiB.bin
bytes=$((size * 1048576))
if [ "$(stat -c %s "$file" 2>/dev/null)" != "$bytes" ]; then
	head -c "$bytes" /dev/urandom > "$file.$$" && mv "$file.$$" "$file" || exit 125
fi
per=${COPY_TIMEOUT:-0}
i=1
while [ "$i" -le "$copies" ]; do
	start=$(date +%s.%N)
	timeout "${per:-0}" scp -q -F "$FIRSTBAD_SSH_CONFIG" "$file" guest:/dev/null
	rc=$?
	secs=$(echo "$(date +%s.%N) - $start" | bc)
	if [ "$rc" = 124 ]; then
		echo "copy $i of $copies stalled: no end within ${per}s: the guest's network hung"
		exit 1
	elif [ "$rc" != 0 ]; then
		echo "copy $i of $copies failed: scp exit $rc"
		exit 1
	fi
	printf 'copy %d of %d: %d MiB in %.1fs (%.1f MB/s)\n' "$i" "$copies" "$size" "$secs" "$(echo "$bytes / $secs / 1000000" | bc -l)"
	if [ "$per" = 0 ]; then
		per=$(echo "$secs * 4 + 1" | bc | cut -d. -f1)
		[ "$per" -lt 60 ] && per=60
	fi
	i=$((i + 1))
done
exit 0
