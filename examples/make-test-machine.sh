#!/usr/bin/env bash
# make-test-machine.sh IMAGE — a small Debian 12 "machine" on a raw disk
# image that boots both ways a real one does: GPT with a BIOS boot
# partition (GRUB, for a BIOS/SeaBIOS boot), an EFI system partition with
# systemd-boot (for a UEFI/OVMF boot, its entry for Debian's kernel
# written here; mounted at /boot/efi) and one ext4 root with systemd,
# openssh-server, kexec-tools, initramfs-tools, QEMU (the machine as the
# VM host of a guest: --guest-kernel) and Debian's own kernel as the
# default one. QEMU boots it from its disk through the firmware and the
# boot loader (no -kernel), so firstbad's machine:// target drives it as it
# would a physical host: a boot-loader entry, a one-shot choice, a reboot,
# SSH.
#
# Root logs in with the key in IMAGE.key (made here); the serial console
# is ttyS0 at 115200; the network is static 10.0.2.15/24 (QEMU's user-mode
# networking), so no DHCP client is needed in the candidate kernels.
#
# Needs root, mmdebstrap, sfdisk, losetup, mkfs.ext4, mkfs.vfat and mtools
# (setup.sh installs them). Takes a few minutes; the tests cache the image
# by this script's hash.
set -euo pipefail
out=${1:?usage: make-test-machine.sh IMAGE}
mirror=${FIRSTBAD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
size=${FIRSTBAD_MACHINE_SIZE:-3G}
work=$(mktemp -d "${out}.work.XXXXXX")
loop=""
made_nodes=()
cleanup() {
  set +e
  for m in dev/pts dev proc sys ""; do
    mountpoint -q "$work/mnt/$m" && umount -l "$work/mnt/$m"
  done
  [ -n "$loop" ] && losetup -d "$loop"
  for n in "${made_nodes[@]}"; do rm -f "$n"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

packages=systemd-sysv,udev,openssh-server,grub-pc,systemd-boot,kexec-tools,initramfs-tools,linux-image-amd64,iproute2,zstd,kmod,procps,qemu-system-x86
# The root file system is kept beside the image, by its package list: a
# new image (another key, a changed script) need not download it again.
rootfs=$(dirname "$out")/root-$(echo "$packages" | sha256sum | cut -c1-16).tar
if [ ! -s "$rootfs" ]; then
  mmdebstrap --variant=minbase --format=tar --include="$packages" \
    --customize-hook='echo firstbad-machine >"$1/etc/hostname"' \
    bookworm "$rootfs.part" "$mirror"
  mv "$rootfs.part" "$rootfs"
fi

truncate -s "$size" "$work/disk.img"
printf '%s\n' 'label: gpt' \
  'size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios' \
  'size=128MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp' \
  'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root' | sfdisk -q "$work/disk.img"
loop=$(losetup --show -f -P "$work/disk.img")
# Where the kernel did not scan the partitions, ask for them; without udev
# nobody makes the partitions' device nodes: make them from sysfs.
sys=/sys/block/$(basename "$loop")
[ -e "$sys/$(basename "$loop")p3" ] || partx -a "$loop"
for n in 2 3; do
  if [ ! -b "${loop}p$n" ]; then
    IFS=: read -r major minor < "$sys/$(basename "$loop")p$n/dev"
    mknod "${loop}p$n" b "$major" "$minor"
    made_nodes+=("${loop}p$n")
  fi
done
mkfs.vfat -F 32 -n ESP "${loop}p2" >/dev/null
mkfs.ext4 -q -L firstbad-root "${loop}p3"
mkdir "$work/mnt"
mount "${loop}p3" "$work/mnt"
tar -C "$work/mnt" -xpf "$rootfs"
for m in dev dev/pts proc sys; do mount --bind "/$m" "$work/mnt/$m"; done
mkdir -p "$work/mnt/boot/efi"

uuid=$(blkid -s UUID -o value "${loop}p3")
esp=$(blkid -s UUID -o value "${loop}p2")
# nofail: a candidate kernel without vfat still boots (firstbad then goes
# back to the default kernel to put the next candidate on the ESP).
{ echo "UUID=$uuid / ext4 errors=remount-ro 0 1"
  echo "UUID=$esp /boot/efi vfat umask=0077,nofail 0 2"; } >"$work/mnt/etc/fstab"
mkdir -p "$work/mnt/etc/systemd/network" "$work/mnt/root/.ssh"
cat >"$work/mnt/etc/systemd/network/20-wired.network" <<'EOF'
[Match]
Name=en* eth*
[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
# Nothing that needs AF_PACKET or IPv6, which small test kernels lack.
LLDP=no
EmitLLDP=no
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
chroot "$work/mnt" systemctl enable systemd-networkd ssh >/dev/null 2>&1
rm -f "$out.key" "$out.key.pub"
ssh-keygen -q -t ed25519 -N '' -C firstbad-test-machine -f "$out.key"
install -m 600 "$out.key.pub" "$work/mnt/root/.ssh/authorized_keys"
# The machine's host key, known to the controller beforehand (strict
# known_hosts, as for any machine).
cp "$work/mnt/etc/ssh/ssh_host_ed25519_key.pub" "$out.hostkey.pub"
cat >"$work/mnt/etc/default/grub" <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
chroot "$work/mnt" grub-install --target=i386-pc "$loop" >/dev/null 2>&1
chroot "$work/mnt" update-grub >/dev/null 2>&1
# update-grub saw a loop device (and no /dev/disk/by-uuid, without udev):
# name the root as Debian's installer would, by UUID.
sed -i "s|root=${loop}p3|root=UUID=$uuid|g" "$work/mnt/boot/grub/grub.cfg"
grep -q "root=UUID=$uuid" "$work/mnt/boot/grub/grub.cfg"
# systemd-boot on the ESP as bootctl install puts it (bootctl cannot run
# here: no EFI variables), also at the removable-media path that the
# firmware finds without a boot entry; Debian's kernel its default entry.
# Written with mtools: the host's kernel need not have vfat.
e=$work/esp
mkdir -p "$e/EFI/BOOT" "$e/EFI/systemd" "$e/loader/entries" "$e/debian"
cp "$work/mnt/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$e/EFI/BOOT/BOOTX64.EFI"
cp "$work/mnt/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$e/EFI/systemd/systemd-bootx64.efi"
cp "$(ls "$work"/mnt/boot/vmlinuz-* | head -1)" "$e/debian/vmlinuz"
cp "$(ls "$work"/mnt/boot/initrd.img-* | head -1)" "$e/debian/initrd.img"
printf 'default debian.conf\ntimeout 0\n' >"$e/loader/loader.conf"
printf 'title Debian\nlinux /debian/vmlinuz\ninitrd /debian/initrd.img\noptions root=UUID=%s ro console=ttyS0,115200\n' "$uuid" \
  >"$e/loader/entries/debian.conf"
mcopy -s -Q -i "${loop}p2" "$e"/* ::/
sync
cleanup_mounts() { for m in dev/pts dev proc sys ""; do umount "$work/mnt/$m"; done; }
cleanup_mounts
losetup -d "$loop"
loop=""
for n in "${made_nodes[@]}"; do rm -f "$n"; done
mv "$work/disk.img" "$out"
echo "make-test-machine: $out ready (root key $out.key)"
