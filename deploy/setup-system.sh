#!/bin/sh
# The system side of a facegate install: the service account, its device groups and its two owner-only state
# folders. One copy of this logic for both ways of installing: the Debian package ships it as
# /usr/libexec/facegate/setup-system and runs it from postinst; deploy/install.sh runs it from the checkout.
#
#   setup-system [--dry-run]      # as root; --dry-run prints the changes it would make and needs no root
#
# Idempotent: it changes only what differs. It never looks inside the state folders: the database and the
# master key belong to the daemon, and an upgrade must not read, move or re-own them.
set -eu

ACCOUNT=facegate
# Must match SupplementaryGroups= in deploy/facegate.service (tests/deploy.rs checks it): an entry that does
# not exist makes the unit fail at start (status 216/GROUP), so a group the system lacks is created here
# rather than left to a failed start. gpio: relay, keypad, contacts; video: camera and the firmware mailbox
# (/dev/vcio, the pi-otp key root); input: USB keypad, scanner; tss: the TPM (/dev/tpmrm0, the tpm key root).
DEVICE_GROUPS="gpio video input tss"
# Database and master key in separate folders (the daemon refuses a key beside its data), both 0700.
STATE_DIRS="/var/lib/facegate /var/lib/facegate-keys"

dry_run=0
case "${1:-}" in
    --dry-run) dry_run=1 ;;
    "") ;;
    *) echo "usage: setup-system [--dry-run]" >&2; exit 2 ;;
esac
if [ "$dry_run" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "setup-system: run as root (or with --dry-run)" >&2
    exit 1
fi

run() {
    if [ "$dry_run" = 1 ]; then echo "setup-system: would run: $*"; else "$@"; fi
}

# useradd/groupadd/usermod (package passwd) rather than adduser: passwd is on every Debian and Raspberry Pi OS
# image, adduser is not on minimal ones.
for group in $DEVICE_GROUPS; do
    if ! getent group "$group" >/dev/null; then
        # Raspberry Pi OS has gpio (its udev rules hand it /dev/gpiomem); plain Debian has neither the rules nor
        # the group, and a container may lack input too. An empty group is harmless and keeps the unit startable.
        echo "setup-system: creating system group $group"
        run groupadd --system "$group"
    fi
done

if ! getent passwd "$ACCOUNT" >/dev/null; then
    echo "setup-system: creating system user $ACCOUNT (no login, no home)"
    # A leftover group of the same name (e.g. the user was deleted by hand) makes --user-group fail: reuse it.
    if getent group "$ACCOUNT" >/dev/null; then group_opt="--gid $ACCOUNT"; else group_opt="--user-group"; fi
    # shellcheck disable=SC2086 # group_opt is one or two words on purpose
    run useradd --system $group_opt --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --comment "facegate gate daemon" "$ACCOUNT"
fi

for group in $DEVICE_GROUPS; do
    if ! id -nG "$ACCOUNT" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
        echo "setup-system: adding $ACCOUNT to group $group"
        run usermod --append --groups "$group" "$ACCOUNT"
    fi
done

for dir in $STATE_DIRS; do
    if [ -e "$dir" ] && [ ! -d "$dir" ]; then
        echo "setup-system: $dir exists and is not a folder; move it away and run again" >&2
        exit 1
    fi
    if [ ! -d "$dir" ]; then
        echo "setup-system: creating $dir (0700, $ACCOUNT)"
        run install -d -m 0700 -o "$ACCOUNT" -g "$ACCOUNT" "$dir"
        continue
    fi
    # Already there (upgrade, or systemd's StateDirectory= made it): put the folder itself back to owner-only
    # if it drifted. Not recursive, on purpose: its contents are the daemon's.
    if [ "$(stat -L -c '%U:%G %a' "$dir")" != "$ACCOUNT:$ACCOUNT 700" ]; then
        echo "setup-system: $dir back to 0700, $ACCOUNT (folder only)"
        run chown "$ACCOUNT:$ACCOUNT" "$dir"
        run chmod 0700 "$dir"
    fi
done
