#!/usr/bin/env bash
# The gate daemon off the Pi, on an embedded default: simulated relay, lights and contacts, the replay camera
# over ../shared/faces (or a real camera: `--camera 0`), three residents enrolled from the shared photos into
# target/dev-gate (kept between runs), one with a PIN, and a fresh visitor pass. On a terminal the daemon keeps
# a status block up to date. Type on standard input while it runs: `340112#4071#` opens by PIN; pasting the
# printed pass opens once; `!guard` presses the guard-call button (`!exit`, `!release`, `!open`/`!shut` too).
#
#   bash deploy/dev-gate.sh [SECONDS] [--camera N]      # default: 60 s of replay
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
faces=${FACEGATE_SHARED_FACES:-../shared/faces}
[ -d "$faces" ] || { echo "dev-gate: $faces is missing (the labelled photos beside the repository)" >&2; exit 2; }
bash deploy/dev-setup.sh
cargo build --release --quiet
bin=target/release/facegate
state=target/dev-gate
mkdir -p "$state/data" "$state/keys"
chmod 700 "$state/data" "$state/keys"
cat > "$state/gate.toml" <<TOML
[store]
database = "$state/data/facegate.sqlite"
master_key = "$state/keys/master.key"
[capture]
source = "replay"
replay_dir = "$faces"
[hardware]
backend = "simulated"
keypad = "stdin"
scanner = "stdin"
TOML
run=("$bin" --config "$state/gate.toml")
if [ ! -f "$state/data/facegate.sqlite" ]; then
    echo "Face entry notice (development)" > "$state/notice.txt"
    i=0
    for dir in "$faces"/person_*/; do
        [ "$(ls "$dir" | wc -l)" -ge 6 ] || continue
        id="r-dev-$((i + 1))"
        "${run[@]}" consent --resident "$id" --notice "$state/notice.txt" --notice-version dev >/dev/null
        # Every photo of the person: enrol uses the first good, live ones and says why it skips the others.
        if out=$("${run[@]}" enroll --resident "$id" "$dir"* 2>/dev/null); then
            echo "$out" | tail -n 1
            i=$((i + 1))
        else
            "${run[@]}" revoke --resident "$id" >/dev/null
        fi
        [ "$i" -ge 3 ] && break
    done
    echo 4071 | "${run[@]}" pin --resident r-dev-1 --code 340112
fi
"${run[@]}" pass issue --valid-for 1h | tail -n 2
echo "dev-gate: running for ${seconds} s; type 340112#4071# (PIN) or paste the pass above, then Enter; !guard calls the guard"
exec "${run[@]}" run --duration "$seconds" "$@"
