#!/usr/bin/env bash
# machine-bench.sh — a whole bisect on a real disk-booted machine (the test
# machine: Debian 12 with systemd, GRUB and its own kernel, under QEMU/TCG):
# the autogroup change among four commits on top of the example history's
# tip, each candidate built with its modules, installed, booted once and
# tested on the machine, then the checks a run does by default (culprit and
# parent again, the revert); first by GRUB's one-shot entry, then by kexec;
# then one step on the machine booted through UEFI and systemd-boot (the
# base commit built with the EFI stub: a whole build).
# Prints the run's time, each search step's build and boot+test times and
# the machine's own lines (install, reboot, up, proof).
#
# Usage: bench/machine-bench.sh   (run ./setup.sh first; tens of minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
go run ./internal/testkernel/prepare
FIRSTBAD_MACHINE_BISECT=1 FIRSTBAD_MACHINE_UEFI=1 go test -count=1 -timeout 5h ./cmd/firstbad/machinetest \
  -run 'TestMachineBisect$|TestMachineSystemdBoot$' -v |
  grep -vE '^(=== RUN|--- PASS|PASS|ok )'
