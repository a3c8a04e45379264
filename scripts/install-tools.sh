#!/usr/bin/env bash
# Installs what the test suite needs beyond Go: Debian's kcat (librdkafka
# 2.0.2, the old-client compatibility check). Idempotent; quiet when all is
# present.
set -euo pipefail

need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)

if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: missing ${need[*]} and no apt-get here; install them by hand" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "install-tools: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
