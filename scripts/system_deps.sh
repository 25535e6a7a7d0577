#!/usr/bin/env bash
# Installs what the tests use from Debian when we are root with apt: Chromium (browser tests),
# Fashion-MNIST (real data) and nginx (`make run WORKERS=N`, tests/test_serving.py). Without root or apt it says so and carries on: the browser
# tests then skip with that reason, and everything else still runs.
set -u
want=()
command -v chromium >/dev/null 2>&1 || want+=(chromium)
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || want+=(dataset-fashion-mnist)
command -v nginx >/dev/null 2>&1 || want+=(nginx)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: not root or no apt-get; skipping ${want[*]} (browser and serving tests will skip)."
  exit 0
fi
echo "system-deps: installing ${want[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1 \
  || echo "system-deps: apt-get install ${want[*]} failed; continuing without."
exit 0
