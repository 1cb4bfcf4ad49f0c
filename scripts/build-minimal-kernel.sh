#!/bin/sh
# Builds novm's minimal guest kernel (an ELF vmlinux) from Debian's linux-source-6.1:
# `make tinyconfig` + scripts/minimal-kernel/novm.config. Installs nothing itself (the packages
# are in scripts/debian-packages.txt). Idempotent: the result is keyed by the hash of the
# fragment and of the source tarball, and an existing one is reused.
#   scripts/build-minimal-kernel.sh [OUTDIR]      (default ~/.cache/novm/minimal-kernel)
# Prints the path of the vmlinux on its last line of output.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/minimal-kernel/novm.config"
tarball=${NOVM_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
outdir=${1:-${HOME}/.cache/novm/minimal-kernel}
jobs=${NOVM_BUILD_JOBS:-2}

for tool in make gcc flex bison bc tar xz sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-minimal-kernel: $tool is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done
[ -f "$tarball" ] || { echo "build-minimal-kernel: $tarball is missing (apt-get install linux-source-6.1)" >&2; exit 2; }
[ -f /usr/include/libelf.h ] || { echo "build-minimal-kernel: libelf-dev is missing" >&2; exit 2; }

key=$( (cat "$fragment"; stat -c '%s %Y' "$tarball") | sha256sum | cut -c1-16)
result="$outdir/vmlinux-$key"
if [ -f "$result" ]; then
  # The cache may hold kernels of other fragments: the link names this one.
  ln -sfn "vmlinux-$key" "$outdir/vmlinux"
  echo "build-minimal-kernel: up to date"
  echo "$result"
  exit 0
fi

mkdir -p "$outdir"
src="$outdir/src"
if [ ! -f "$src/.unpacked" ] || [ "$(cat "$src/.unpacked")" != "$(stat -c '%s %Y' "$tarball")" ]; then
  echo "build-minimal-kernel: unpacking $tarball" >&2
  rm -rf "$src"
  mkdir -p "$src"
  tar -xJf "$tarball" -C "$src" --strip-components=1
  stat -c '%s %Y' "$tarball" >"$src/.unpacked"
fi

cd "$src"
make -s ARCH=x86_64 tinyconfig >/dev/null 2>&1
cat "$fragment" >>.config
make -s ARCH=x86_64 olddefconfig >/dev/null 2>&1
# olddefconfig drops what the tree cannot satisfy: say so instead of building a kernel that
# silently lacks something novm guests rely on.
missing=0
for line in $(grep -E '^CONFIG_[A-Z0-9_]+=' "$fragment"); do
  grep -qx "$line" .config || { echo "build-minimal-kernel: $line did not stick" >&2; missing=1; }
done
[ "$missing" = 0 ] || exit 1

echo "build-minimal-kernel: make -j$jobs vmlinux (a few minutes)" >&2
make -s ARCH=x86_64 -j"$jobs" vmlinux >&2
cp .config "$outdir/config-$key"
cp vmlinux "$result.tmp"
mv "$result.tmp" "$result"
ln -sf "vmlinux-$key" "$outdir/vmlinux"
echo "$result"
