#!/bin/busybox sh
# SPDX-License-Identifier: Apache-2.0
# /init of the `make kernels` initramfs (tests/kernels/run.py builds it):
# loads the virtio and 9p modules listed in /modules.order, mounts the
# shared Debian root (tag rootfs) and the work directory (tag ws), and hands
# over to /ws/guest-init.sh.
bb=/bin/busybox
$bb mkdir -p /proc /dev /newroot
$bb mount -t proc proc /proc
$bb mount -t devtmpfs devtmpfs /dev
for m in $($bb cat /modules.order); do
	$bb insmod "/modules/$m" || echo "kernels: insmod $m failed"
done
opts=trans=virtio,version=9p2000.L,msize=262144
if ! $bb mount -t 9p -o "$opts,cache=loose" rootfs /newroot ||
	! $bb mount -t 9p -o "$opts" ws /newroot/ws; then
	echo "kernels: cannot mount the shared directories"
	$bb poweroff -f
fi
$bb umount /proc
$bb mount --move /dev /newroot/dev
exec $bb switch_root /newroot /bin/sh /ws/guest-init.sh
