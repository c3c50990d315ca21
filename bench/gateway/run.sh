#!/usr/bin/env bash
# Gateway benchmark: the app directly, through the Flint gateway, and through
# nginx, on this machine in one run. Results go to docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nginx >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  fi
fi
# nginx-light installs into /usr/sbin, which may not be on PATH.
export PATH="$PATH:/usr/sbin"
cargo bench -p flint-runtime --bench gateway
