#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (issue 20) until 1,000,000 executions or SECONDS (default 900, the acceptance
# run; CI runs 30), whichever comes first, seeded from the project's own fixtures, and prints one line per
# target: executions, seconds, result. The lines also go to fuzz/artifacts/summary.tsv for docs/reliability.md.
#
#     bash deploy/fuzz.sh [SECONDS] [TARGET...]
#     RUNS=... bash deploy/fuzz.sh ...   # another execution bound (default 1000000)
#     FUZZ_BUILD="--dev --sanitizer none" TIMEOUT=10 JOBS=2 bash deploy/fuzz.sh 30   # CI's short run
#
# The acceptance runs use optimised builds with AddressSanitizer (the default FUZZ_BUILD, "-O"; about 36 min
# to build on 2 cores). CI's short run builds unoptimised and without ASan (about 6 min): it still runs every
# target's own checks on mutated inputs, and a panic or an abort is still a crash; an input is allowed
# TIMEOUT seconds there, for unoptimised argon2id and models.
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer's limits are the issue's:
# an input taking over 1 s is a timeout, over 512 MB outstanding is out of memory. Findings land in
# fuzz/artifacts/<target>/; each one becomes a regression test before it is fixed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-900}
shift || true
runs=${RUNS:-1000000}
read -r -a build <<<"${FUZZ_BUILD:--O}"
timeout=${TIMEOUT:-1}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Seeds: real inputs of each surface, copied (never generated from photos at run time).
seed() {
    local dir="fuzz/corpus/$1"
    shift
    mkdir -p "$dir"
    for f in "$@"; do
        if [ -f "$f" ]; then cp -n "$f" "$dir/" || true; fi
    done
}
# Images: the public-domain reference photo the model fetch verifies, and small synthetic PNGs; never the
# labelled photos of ../shared (libFuzzer writes mutated copies of its seeds into the corpus folder).
seed decode_image models/fixtures/astronaut.png
python3 - fuzz/corpus/decode_image <<'PY'
import struct, sys, zlib
def png(path, w, h, colour):
    rows = b"".join(b"\0" + bytes(((x * 7 + y * 3) % 256 for x in range(w * colour))) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    kind = {1: 0, 3: 2, 4: 6}[colour]
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, kind, 0, 0, 0))
    open(path, "wb").write(data + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
for w, h, c in [(1, 1, 3), (16, 9, 1), (64, 48, 3), (33, 17, 4)]:
    png(f"{sys.argv[1]}/synthetic_{w}x{h}x{c}.png", w, h, c)
PY
# QR frames: a visitor pass drawn as a code (low bit of the first byte set: level M, 4 px a module, black on
# white), the same with three modules flipped, and a grey pattern; see fuzz/fuzz_targets/qr_frame.rs.
mkdir -p fuzz/corpus/qr_frame
printf '\003\023\002FGP1:ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRST' >fuzz/corpus/qr_frame/pass
printf '\033\023\102FGP1:ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRST\001\002\011\012\020\003' \
    >fuzz/corpus/qr_frame/pass-damaged
printf '\000\040\030\000\377\000\377\377\000' >fuzz/corpus/qr_frame/pattern
# And the inputs that found slow searches: the runs explore around them.
seed qr_frame fuzz/regressions/qr_frame/*
seed config_toml deploy/facegate.toml
mkdir -p fuzz/corpus/pass_text fuzz/corpus/audit_report
printf 'FGP1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' > fuzz/corpus/pass_text/prefix
printf '{"report":{"passed":true,"device":"gate-1"},"public_key":"00","signature":"00"}' > fuzz/corpus/audit_report/shape
# Compound envelopes: a mode byte (odd: sealed with the compound key), a subject byte, then the JSON a gate
# sends (one of each kind).
mkdir -p fuzz/corpus/compound_envelope
i=0
for json in \
    '{"kind":"revoked","origin":"gate-a","resident":"r-1","generation":1,"version":2}' \
    '{"kind":"moved_out","origin":"gate-a","resident":"r-1","generation":1,"version":3}' \
    '{"kind":"counts","origin":"gate-a","serial":7,"cells":[[1780000000,"face","opened",12],[1780000000,"pin","refused",3]]}' \
    '{"kind":"member","origin":"gate-a","public":"0000000000000000000000000000000000000000000000000000000000000000"}' \
    '{"kind":"renewal","origin":"gate-a","epoch":1,"shares":[{"gate":"gate-b","enc":"AAAA","sealed":"AAAA"}]}' \
    '{"kind":"grant","origin":"gate-a","gate":"gate-b","epoch":1,"share":{"gate":"gate-b","enc":"AAAA","sealed":"AAAA"}}' \
    '{"kind":"template","origin":"gate-a","resident":"r-1","notice_version":"1","notice_sha256":"ab","purpose":"p","channel":"kiosk","granted_at":1780000000,"generation":1,"version":1,"template":"AAAA"}'; do
    printf "\\001\\00${i}%s" "$json" >"fuzz/corpus/compound_envelope/kind-$i"
    i=$((i + 1))
done
mkdir -p fuzz/corpus/portal_requests fuzz/corpus/store_file
# Camera buffers: a layout byte, width and height (little-endian u16), then the bytes: one small frame of each.
mkdir -p fuzz/corpus/camera_buffer
python3 - fuzz/corpus/camera_buffer <<'PY'
import struct, sys
for kind, per_pixel in [(1, 2), (2, 1.5), (3, 1), (4, 3), (5, 3)]:
    w, h = 8, 6
    body = bytes((i * 37) % 256 for i in range(int(w * h * per_pixel)))
    open(f"{sys.argv[1]}/layout-{kind}", "wb").write(bytes([kind]) + struct.pack("<HH", w, h) + body)
PY
{ printf '\000\020\000\011\000'; cat fuzz/corpus/decode_image/synthetic_16x9x1.png; } >fuzz/corpus/camera_buffer/mjpeg

cargo +nightly fuzz build "${build[@]}"
mkdir -p fuzz/artifacts
summary=fuzz/artifacts/summary.tsv
printf 'target\texecutions\tseconds\tresult\n' >"$summary"
# One target's run; its line goes to the summary. JOBS targets run at a time (default 1: the acceptance runs
# want a core each; CI runs two on its two cores).
run_one() {
    local target=$1 dict=() log result execs took
    if [ -f "fuzz/dicts/${target%%_*}.dict" ]; then dict=(-dict="fuzz/dicts/${target%%_*}.dict"); fi
    if [ -f "fuzz/dicts/${target}.dict" ]; then dict=(-dict="fuzz/dicts/${target}.dict"); fi
    log="fuzz/artifacts/${target}.log"
    mkdir -p "fuzz/artifacts/${target}"
    if cargo +nightly fuzz run "${build[@]}" "$target" -- "${dict[@]}" -runs="$runs" -max_total_time="$seconds" \
        -timeout="$timeout" -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo '?')
    echo "fuzz: ${target}: ${result}, ${execs} executions in ${took} s (log ${log})"
    printf '%s\t%s\t%s\t%s\n' "$target" "$execs" "$took" "$result" >>"$summary"
    [ "$result" = ok ]
}
jobs_at_once=${JOBS:-1}
status=0
running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$jobs_at_once" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    run_one "$target" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit "$status"
