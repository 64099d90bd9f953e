#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian bookworm machine (as root): the system packages
# behind the local services and the project itself, with its test/demo extras, into ./.venv.
# Safe to run again: what is already there is not installed twice.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the browser checks of the Prefect UI (driven by Playwright, which downloads no browser of its own).
apt_packages=(gnupg zstd wine64 influxdb influxdb-client victoria-metrics chromium etcd-server etcd-client)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# pip's own chatter (this machine's pip config names wheel folders that may be absent) goes to a log,
# shown only when the install fails.
if ! .venv/bin/pip install -q -e '.[dev]' > .venv/pip-install.log 2>&1; then
    tail -40 .venv/pip-install.log
    echo "bootstrap: pip install failed (full log: .venv/pip-install.log)" >&2
    exit 1
fi
echo "bootstrap: ready (.venv)"
