#!/bin/sh
# Installs everything novm needs on a Debian 12 host: the Debian packages listed in
# scripts/debian-packages.txt (only the missing ones, so a second run is quick), the npm
# packages from package-lock.json, and novm's minimal guest kernel (built once, cached).
set -eu
cd "$(dirname "$0")/.."
packages=$(grep -v '^#' scripts/debian-packages.txt | grep -v '^$' | tr '\n' ' ')
missing=""
for p in $packages; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing="$missing $p"
  fi
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# novm's minimal guest kernel, for the tests that boot Linux under novm's own KVM VMM: built
# once from Debian's linux-source-6.1 (minutes), then reused (a fraction of a second).
./scripts/build-minimal-kernel.sh >/dev/null
echo "setup: done"
