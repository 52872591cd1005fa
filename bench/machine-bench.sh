#!/usr/bin/env bash
# machine-bench.sh — a whole bisect on a real disk-booted machine (the test
# machine: Debian 12 with systemd, GRUB and its own kernel, under QEMU/TCG):
# five commits of the example 6.1 history around the autogroup change, each
# candidate built with its modules, installed, booted once and tested on the
# machine; first by GRUB's one-shot entry, then by kexec. Prints each step's
# build and boot+test times and the machine's own lines (install, reboot,
# up, proof).
#
# Usage: bench/machine-bench.sh   (run ./setup.sh first; tens of minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
go run ./internal/testkernel/prepare
FIRSTBAD_MACHINE_BISECT=1 go test -count=1 -timeout 4h ./cmd/firstbad/machinetest -run 'TestMachineBisect$' -v |
  grep -vE '^(=== RUN|--- PASS|PASS|ok )'
