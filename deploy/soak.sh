#!/usr/bin/env bash
# The soak of issue 20: the release daemon for SECONDS (default 3600) with the replay camera at 15 frames/s,
# keypad PINs right and wrong, visitor passes, portal traffic, CLI revocations and re-enrolments and broker
# cuts; samples RSS, file descriptors, threads, the database and its WAL every 10 s and prints the figures
# docs/reliability.md reports. Writes target/soak/soak.csv and target/soak/soak.svg (numbers only).
#
#     bash deploy/soak.sh [SECONDS]
#
# Needs ../shared (the replayed webcam frames), nats-server and the models (deploy/dev-setup.sh installs both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-3600}
out=${SOAK_OUT:-target/soak}
mkdir -p "$out"
cargo bench --bench soak -- "$seconds" "$(realpath "$out")" 2>&1 | tee "$out/soak.log"
