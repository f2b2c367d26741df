#!/usr/bin/env bash
# Builds the facegate Debian package with cargo-deb (metadata: [package.metadata.deb] in Cargo.toml) and checks
# what went into it before anyone installs it.
#
#   bash deploy/build-deb.sh                                       # this machine's architecture
#   bash deploy/build-deb.sh --target aarch64-unknown-linux-gnu    # 64-bit Raspberry Pi (arm64 .deb)
#
# Needs cargo-deb (`cargo install cargo-deb --locked`). The models are fetched and sha256-checked first: they
# are package content, and a package without them would install a gate without face entry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=""
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target="${2:?--target needs a triple}"; shift 2 ;;
        --target=*) target="${1#--target=}"; shift ;;
        *) echo "build-deb.sh: unknown argument $1 (only --target TRIPLE)" >&2; exit 2 ;;
    esac
done

command -v cargo-deb >/dev/null 2>&1 || { echo "build-deb.sh: cargo-deb missing: cargo install cargo-deb --locked" >&2; exit 1; }
bash models/fetch.sh

args=(--locked)
if [ -n "$target" ]; then
    args+=(--target "$target")
    if [ "$target" = aarch64-unknown-linux-gnu ]; then
        # The same toolchain set-up as deploy/cross-build.sh (which installs it and smoke-tests under qemu).
        # cargo-deb then strips with /usr/bin/aarch64-linux-gnu-strip from the same binutils.
        command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 \
            || { echo "build-deb.sh: no aarch64 cross toolchain: run bash deploy/cross-build.sh once" >&2; exit 1; }
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
        export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
    fi
fi

# cargo-deb prints the path of the package it wrote as its last line.
deb="$(cargo deb "${args[@]}" | tail -n 1)"
[ -f "$deb" ] || { echo "build-deb.sh: cargo deb did not report a package file (got: $deb)" >&2; exit 1; }

echo "build-deb.sh: $deb"
dpkg-deb -I "$deb"
listing="$(dpkg-deb -c "$deb")"
echo "$listing"

# What an installed gate cannot do without; a renamed asset or a moved unit would otherwise go unnoticed.
missing=0
for path in ./usr/bin/facegate ./usr/libexec/facegate/setup-system ./usr/lib/systemd/system/facegate.service \
    ./etc/facegate/facegate.toml ./usr/share/facegate/models/face_detection_yunet_2023mar_int8bq.onnx \
    ./usr/share/facegate/models/face_recognition_sface_2021dec_int8bq.onnx ./usr/share/doc/facegate/README.md \
    ./usr/share/doc/facegate/copyright; do
    grep -q " $path\$" <<<"$listing" || { echo "build-deb.sh: missing from the package: $path" >&2; missing=1; }
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/facegate/facegate.toml \
    || { echo "build-deb.sh: /etc/facegate/facegate.toml is not a conffile" >&2; missing=1; }
dpkg-deb -I "$deb" postinst | grep -q /usr/libexec/facegate/setup-system \
    || { echo "build-deb.sh: postinst does not run setup-system" >&2; missing=1; }
# Nothing image-like, no database and no key may ever be shipped.
if grep -E '\.(sqlite|key|jpe?g|png)$' <<<"$listing"; then
    echo "build-deb.sh: the package carries state or images (above)" >&2
    missing=1
fi
[ "$missing" = 0 ] || exit 1
echo "build-deb.sh: ok: $deb"
