#!/usr/bin/env bash
# The browser the console's tests drive: Chromium and its WebDriver, from Debian's packages.
# Does nothing when both are there; installs them otherwise (needs root, as CI has).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-browser: chromium and chromium-driver are missing; install them as root:" >&2
    echo "  apt-get update && apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
