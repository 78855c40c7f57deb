#!/usr/bin/env bash
# Install the Debian packages the artifact-evaluation tests need (issue 6):
#   docker.io + debootstrap  -> tests/test_docker.py (local daemon, local base image)
#   slurmctld slurmd slurm-client munge -> tests/test_slurm.py (single-node SLURM)
# Idempotent and quiet: does nothing when every package is already installed.
# Needs root (CI runs as root). Usage: tests/infra/install_system_deps.sh
set -euo pipefail

#   dataset-fashion-mnist    -> the photographs dataset (kdconcepts.data.photos, its checksum test)
#   qemu-user                -> benchmarks/portability.py (the same bits as an emulated Haswell and EPYC-Rome)
packages=(docker.io debootstrap slurmctld slurmd slurm-client munge dataset-fashion-mnist qemu-user)

missing=()
for pkg in "${packages[@]}"; do
    # dpkg-query prints "install ok installed" only for a fully installed package.
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install_system_deps.sh: need root to install: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit code 101 stops Debian maintainer scripts from starting the daemons:
# the tests start (and stop) their own instances with their own state folders.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap 'if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi' EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install_system_deps.sh: installed ${missing[*]}" >&2
