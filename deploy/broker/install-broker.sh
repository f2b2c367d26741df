#!/usr/bin/env bash
# Installs the compound's broker on this Pi (one gate can host it): Debian's nats-server, the broker files
# made by `facegate compound init` (the folder's broker/), a hardened unit override, and the durable store.
# Usage: sudo bash deploy/broker/install-broker.sh /media/usb/compound/broker
# Run it again after every `facegate compound add-gate` or `remove-gate` (they rewrite nats-server.conf).
set -euo pipefail
src="${1:?usage: install-broker.sh <compound folder>/broker}"
[ -f "$src/nats-server.conf" ] || { echo "no nats-server.conf in $src (made by facegate compound init)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
}
conf_dir=$(sed -n 's/^ *cert_file: "\(.*\)\/server.pem"/\1/p' "$src/nats-server.conf")
store_dir=$(sed -n 's/^ *store_dir: "\(.*\)"/\1/p' "$src/nats-server.conf")
install -d -m 0750 -o root -g nats "$conf_dir"
install -m 0644 -o root -g nats "$src/server.pem" "$src/ca.pem" "$conf_dir/"
install -m 0640 -o root -g nats "$src/server.key" "$conf_dir/"
install -m 0644 "$src/nats-server.conf" /etc/nats-server.conf
install -d -m 0700 -o nats -g nats "$store_dir"
install -d /etc/systemd/system/nats-server.service.d
install -m 0644 "$(dirname "${BASH_SOURCE[0]}")/nats-server-hardening.conf" \
  /etc/systemd/system/nats-server.service.d/facegate.conf
systemctl daemon-reload
systemctl enable nats-server
# A reload applies a rewritten configuration (a gate added or removed) without dropping the other gates.
systemctl reload-or-restart nats-server
echo "broker running: $(nats-server --version)"
