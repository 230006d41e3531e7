#!/usr/bin/env bash
# What `npm run bench` needs beyond the test setup: GNU time for peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_apt_packages time
