#!/usr/bin/env bash
# Sets up latentwatch in a virtual environment at .venv in the checkout.
#   scripts/setup.sh          base + training extra (what `latentwatch demo` needs)
#   scripts/setup.sh --dev    also the test tools and the Debian packages the tests start
# TORCH_SPEC picks the torch build (default torch==2.13.0, the CPU wheel on these machines).
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

if [ "$dev" = 1 ] && [ -f scripts/debian-packages.txt ]; then
  missing=()
  while read -r pkg; do
    [ -z "$pkg" ] || [ "${pkg#\#}" != "$pkg" ] && continue
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done < scripts/debian-packages.txt
  if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
extras="train"
[ "$dev" = 1 ] && extras="train,dev"
.venv/bin/python -m pip install -q -e ".[$extras]"
echo "latentwatch is set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
