#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# PID 1 of the `make kernels` guest (tests/kernels/run.py): mounts what the
# agent needs, runs exercise.py against the dist binary from the shared
# directory /ws, and powers off. Everything it reports goes to the serial
# console and to /ws/out/.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
busybox ip link set lo up
hostname wirespan-kernels
echo "kernels: guest userspace up at $(cut -d' ' -f1 /proc/uptime) s of uptime"
python3 /ws/exercise.py --wirespan /ws/dist/bin/wirespan --programs /ws/programs.txt \
	--out /ws/out/guest.json --label guest --tmp /tmp/kernels
rc=$?
cp -r /tmp/kernels /ws/out/guest-tmp 2>/dev/null
echo "kernels: guest done rc=$rc at $(cut -d' ' -f1 /proc/uptime) s of uptime"
sync
echo o >/proc/sysrq-trigger
sleep 30
