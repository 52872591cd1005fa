#!/usr/bin/env bash
# setup.sh — install what firstbad needs on Debian/Ubuntu and build it.
#
#   ./setup.sh            install packages, build a static bin/firstbad, and
#                         link it into /usr/local/bin (root) or ~/.local/bin
#
# Needs Go 1.26 or newer (https://go.dev/dl/) on PATH or in /usr/local/go.
set -euo pipefail
cd "$(dirname "$0")"

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

# git and a shell run the bisect; the rest builds and boots kernels (make,
# a compiler, kernel build dependencies, ccache, QEMU, a static busybox for
# the initramfs, an ssh client for host-side tests; an sshd and libvirt
# that the tests use as a remote VM host and a libvirt domain; mmdebstrap
# and bubblewrap for build roots of older toolchains (mmdebstrap and fdisk
# also make the test machine's disk image, qemu-utils its overlays); patch for the kernel
# histories the tests make; nginx-core, whose WebDAV module is the shared
# artifact store the tests start; distcc and redis-server, the compile
# cluster and team ccache the tests start on loopback; dosfstools and mtools
# for the test machine's EFI system partition and ovmf, the UEFI firmware it boots
# under).
packages=(git make gcc libc6-dev bc bison flex libelf-dev libssl-dev cpio xz-utils patch
  ccache qemu-system-x86 busybox-static openssh-client openssh-server ca-certificates curl python3
  libvirt-daemon-system libvirt-clients mmdebstrap bubblewrap fdisk qemu-utils nginx-core
  distcc redis-server dosfstools mtools ovmf)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null || { echo "setup: Go is missing: install Go 1.26+ from https://go.dev/dl/" >&2; exit 1; }

# Static: the same binary also runs inside test VMs.
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/firstbad ./cmd/firstbad
if [ "$(id -u)" = 0 ]; then dest=/usr/local/bin; else dest=$HOME/.local/bin; mkdir -p "$dest"; fi
ln -sf "$PWD/bin/firstbad" "$dest/firstbad"
echo "setup: firstbad installed as $dest/firstbad"
