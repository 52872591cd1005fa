#!/bin/sh
# Guest test: good (old behaviour) while scheduler autogrouping is on by
# default; bad once a commit turns it off. Runs inside the guest.
v=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null) || {
  echo "no /proc/sys/kernel/sched_autogroup_enabled: kernel lacks CONFIG_SCHED_AUTOGROUP or CONFIG_PROC_SYSCTL"
  exit 125
}
echo "sched_autogroup_enabled=$v"
[ "$v" = 1 ]
