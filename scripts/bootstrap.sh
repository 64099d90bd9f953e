#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian bookworm machine (as root): the system packages
# behind the local services and the project itself, with its test/demo extras, into ./.venv.
# Safe to run again: what is already there is not installed twice.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(gnupg zstd wine64 influxdb influxdb-client victoria-metrics)
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
# This machine's pip config names local wheel folders that may be absent; its warnings are noise here.
quiet_pip() { .venv/bin/pip install -q "$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }; }
quiet_pip -e '.[dev]'
echo "bootstrap: ready (.venv)"
