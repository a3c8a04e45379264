#!/usr/bin/env bash
# Builds the images docker-compose.yml uses, from static binaries compiled
# here: strata/strata:dev, strata/minio:dev, strata/etcd:dev. Nothing is
# pulled from a registry (FROM scratch). MinIO is built once and cached
# under ~/.cache/strata (the same binary the tests use).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
cache="${HOME}/.cache/strata/bin"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

echo "build-images: strata and etcd (static)"
CGO_ENABLED=0 $GO build -trimpath -o "$ctx/strata" ./cmd/strata
CGO_ENABLED=0 $GO build -trimpath -o "$ctx/etcd" go.etcd.io/etcd/server/v3

minio="$cache/minio-$MINIO_VERSION"
if [ ! -x "$minio" ]; then
  echo "build-images: building MinIO $MINIO_VERSION (once; takes minutes)"
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  GOBIN="$tmp" CGO_ENABLED=0 $GO install "github.com/minio/minio@$MINIO_VERSION"
  mv "$tmp/minio" "$minio"
  rm -rf "$tmp"
fi
cp "$minio" "$ctx/minio"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
else
  : > "$ctx/ca-certificates.crt"
fi

for img in strata minio etcd; do
  docker build -q -f "docker/$img.Dockerfile" -t "strata/$img:dev" "$ctx" >/dev/null
  echo "build-images: strata/$img:dev"
done
