#!/usr/bin/env bash
# Cross-builds facegate for a 64-bit Raspberry Pi (aarch64-unknown-linux-gnu) with Debian's cross gcc, then
# smoke-tests the ARM binary under qemu-user: `--version`, and `compare` on two photos with the real models.
#
#   bash deploy/cross-build.sh            # from the repository root, ../shared beside it for the photos
#
# Installs what is missing: Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user, and the rustup
# target. The result is target/aarch64-unknown-linux-gnu/release/facegate.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for pkg in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libclang-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "cross-build: installing ${missing[*]}"
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
# The tpm key root links libtss2 (tss-esapi): the arm64 libraries from Debian's multiarch, found by pkg-config.
if ! dpkg -s libtss2-dev:arm64 >/dev/null 2>&1; then
    echo "cross-build: installing libtss2-dev:arm64 (multiarch)"
    sudo_if_needed dpkg --add-architecture arm64
    sudo_if_needed apt-get update -q
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libtss2-dev:arm64
fi
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_PATH_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
bash models/fetch.sh

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# bindgen (v4l2 headers for the camera) must read the ARM sysroot's headers, not the host's.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
cargo build --release --locked --target aarch64-unknown-linux-gnu

bin=target/aarch64-unknown-linux-gnu/release/facegate
run_arm() { QEMU_LD_PREFIX=/usr/aarch64-linux-gnu LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu qemu-aarch64 "$bin" "$@"; }
echo "cross-build: $(file -b "$bin" | cut -d, -f1-2)"
run_arm --version
faces=../shared/faces
person=$(for d in "$faces"/person_*/; do [ "$(ls "$d" | wc -l)" -ge 2 ] && { echo "$d"; break; }; done || true)
if [ -n "$person" ]; then
    a=$(ls "$person"* | head -1)
    b=$(ls "$person"* | sed -n 2p)
else
    a=models/fixtures/astronaut.png
    b=models/fixtures/astronaut.png
fi
out=$(run_arm --models models compare "$a" "$b")
echo "cross-build: qemu-aarch64 compare: $out"
case "$out" in
    *"same person"*) echo "cross-build: ok" ;;
    *) echo "cross-build: the ARM binary did not recognise the same person" >&2; exit 1 ;;
esac
