#!/usr/bin/env bash
# Headless Chromium (Debian's `chromium`) for the screenshots of `snakemake --report` in
# tests/test_snakemake_report.py. Idempotent; does nothing where chromium is present or
# where we cannot install (not root, no apt-get): the screenshot test then skips.
set -euo pipefail
if command -v chromium >/dev/null; then
    echo "chromium present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "skipping chromium: needs root and apt-get (the report screenshot test will be skipped)"
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
command -v chromium && echo "chromium installed"
