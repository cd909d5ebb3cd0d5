#!/usr/bin/env bash
# Test-only dependencies beyond `pip install -e .[test]`; each part is idempotent.
set -euo pipefail
VENV=${1:-.venv}
here=$(cd "$(dirname "$0")" && pwd)
for part in "$here"/setup.d/*.sh; do
    [ -e "$part" ] || continue
    echo ">> $(basename "$part")"
    bash "$part" "$VENV"
done
