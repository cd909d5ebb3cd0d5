#!/usr/bin/env bash
# Debian packages of the single-node SLURM cluster that tests/test_slurm.py stands up:
# munge, slurmctld, slurmd, slurm client tools, slurmdbd and MariaDB (without
# accounting `sacct` never reports a job finished and the executor plugin waits forever).
# Idempotent; does nothing where the packages are present or where we cannot install
# (not root, no apt-get): the test then skips and says why.
set -euo pipefail

PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "slurm test packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "skipping ${missing[*]}: needs root and apt-get (the SLURM test will be skipped)"
    exit 0
fi

# The packages' maintainer scripts must not start daemons: the test starts its own,
# on private ports and sockets. policy-rc.d exit 101 = "action forbidden".
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
