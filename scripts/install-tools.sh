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

# MinIO, the object store the tests and benchmarks run (internal/miniotest):
# built once from the Go module proxy into $HOME/.cache/strata/bin and kept
# there. The version must match internal/miniotest.Version (a test checks).
# Building takes several minutes on 2 cores; later runs skip it.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
minio_bin="$HOME/.cache/strata/bin/minio-$MINIO_VERSION"
if [ -z "${STRATA_MINIO_BIN:-}" ] && [ ! -x "$minio_bin" ]; then
  mkdir -p "$(dirname "$minio_bin")"
  build_minio() {
    [ -x "$minio_bin" ] && return 0 # built while we waited for the lock
    echo "install-tools: building MinIO $MINIO_VERSION (several minutes, once)"
    local tmp
    tmp=$(mktemp -d "$(dirname "$minio_bin")/.minio-build-XXXXXX")
    if (cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS= go install "github.com/minio/minio@$MINIO_VERSION") &&
      mv "$tmp/minio" "$minio_bin"; then
      rm -rf "$tmp"
    else
      rm -rf "$tmp"
      echo "install-tools: building MinIO failed" >&2
      return 1
    fi
  }
  if command -v flock >/dev/null 2>&1; then
    # The same lock file internal/miniotest takes, so they never build twice.
    exec 9>"$minio_bin.lock"
    flock -w 2700 9
    build_minio
    flock -u 9
    exec 9>&-
  else
    build_minio
  fi
fi
