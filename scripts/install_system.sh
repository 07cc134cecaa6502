#!/usr/bin/env bash
# Installs the Debian packages fastcurate's tests and default metadata need, if they are missing:
# WordNet 3.0, a C++ compiler, Chromium (the report's browser test).
set -euo pipefail
need=()
[ -f /usr/share/wordnet/data.noun ] || need+=(wordnet-base)
command -v g++ >/dev/null || need+=(g++)
# headless Chromium: the report's browser test (driven by the PyPI playwright, no browser download)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
