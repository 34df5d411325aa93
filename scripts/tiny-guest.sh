#!/usr/bin/env bash
# Build the tiny guest image of the real-hypervisor suite from Debian packages (no install,
# only extract): Debian's cloud kernel and an initramfs of busybox plus the virtio modules.
# Result, in the image cache directory given as $1 (an image_ref is a directory there):
#   $1/tiny/vmlinuz  $1/tiny/initrd.img  $1/tiny/disk.qcow2  $1/tiny/cmdline
# The guest prints GUEST-BOOTED, lists its block and net devices whenever they change
# (GUEST-DEVICES ...), and powers off when the ACPI power button is pressed.
set -euo pipefail
images=$(realpath -m "${1:?usage: tiny-guest.sh IMAGES_DIR}")
out=$images/tiny
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -s "$out/disk.qcow2" ]; then
  echo "== tiny guest already built in $out"; exit 0
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
echo "== downloading $kernel_pkg and busybox-static"
apt-get download -q "$kernel_pkg" busybox-static >/dev/null
dpkg-deb -x linux-image-*.deb k
dpkg-deb -x busybox-static_*.deb bb
mkdir -p root/bin root/lib/modules root/proc root/sys root/dev root/tmp
cp bb/bin/busybox root/bin/busybox
# Order matters: there is no modprobe, so dependencies come first.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk \
         failover net_failover virtio_net virtio_balloon virtio_console button evdev; do
  f=$(find k/lib/modules -name "$m.ko*" | head -n1)
  [ -n "$f" ] || { echo "   ($m is built in)"; continue; }
  case "$f" in
    *.xz) xz -dc "$f" > "root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "root/lib/modules/$m.ko" ;;
    *) cp "$f" "root/lib/modules/$m.ko" ;;
  esac
  echo "$m" >> root/lib/modules/order
done
cat > root/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
echo "GUEST-BOOTED $(uname -r)"
devices() { echo "block: $(ls /sys/block | tr '\n' ' ')net: $(ls /sys/class/net | tr '\n' ' ')"; }
(last=""; while :; do now=$(devices); [ "$now" != "$last" ] && echo "GUEST-DEVICES $now"; last=$now; sleep 0.5; done) &
while :; do
  for d in /sys/class/input/event*; do
    [ "$(cat "$d/device/name" 2>/dev/null)" = "Power Button" ] && ev=/dev/input/${d##*/} && break 2
  done
  sleep 0.2
done
echo "GUEST-ACPI-READY"
dd if="$ev" of=/dev/null bs=24 count=1 2>/dev/null
echo "GUEST-POWER-BUTTON"
poweroff -f
EOF
chmod +x root/init
mkdir -p "$out"
(cd root && find . | ./bin/busybox cpio -o -H newc 2>/dev/null | gzip -9) > "$out/initrd.img"
cp k/boot/vmlinuz-* "$out/vmlinuz"
qemu-img create -q -f qcow2 "$out/disk.qcow2" 64M
echo "console=ttyS0 panic=-1 quiet" > "$out/cmdline"
chmod 644 "$out"/*
echo "== tiny guest: $(du -sh "$out" | cut -f1) in $out"
