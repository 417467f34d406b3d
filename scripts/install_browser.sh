#!/usr/bin/env bash
# Install what the browser tests need, idempotently:
#   - Debian's chromium (apt-get, as root), skipped when /usr/bin/chromium exists;
#   - the Python package playwright into the virtualenv given as $1 (it drives the system chromium through
#     executable_path="/usr/bin/chromium"; `playwright install` is never run: it downloads a browser build).
# Usage: scripts/install_browser.sh .venv
set -euo pipefail
VENV="${1:?usage: $0 VENV}"

if [ -x /usr/bin/chromium ]; then
  echo "chromium: present ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
elif [ "$(id -u)" = "0" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
else
  echo "chromium: missing and not root; install Debian's chromium (apt-get install chromium) to run browser tests" >&2
fi

if "$VENV/bin/python" -c "import playwright" 2>/dev/null; then
  echo "playwright: present in $VENV"
else
  "$VENV/bin/python" -m pip install -q "playwright>=1.40"
fi
