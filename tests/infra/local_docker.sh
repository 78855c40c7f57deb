#!/usr/bin/env bash
# A throwaway Docker daemon and a local base image, for testing the Dockerfile on a machine
# without registry access (issue 6). Everything lives under STATE_DIR; nothing touches the
# system daemon (if any) or /var/lib/docker.
#
#   tests/infra/local_docker.sh start STATE_DIR   # start dockerd; prints DOCKER_HOST=...
#   tests/infra/local_docker.sh base  STATE_DIR TAG   # debootstrap bookworm + docker import
#   tests/infra/local_docker.sh stop  STATE_DIR   # stop the daemon started by `start` (by PID)
#
# Then: export DOCKER_HOST=unix://STATE_DIR/docker.sock
#       docker build --build-arg BASE_IMAGE=TAG -t kdconcepts:test .
# Needs root and the Debian packages from tests/infra/install_system_deps.sh.
set -euo pipefail

usage() { sed -n '2,13p' "$0" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
action=$1
state=$(realpath -m "$2")
sock="$state/docker.sock"
pidfile="$state/dockerd.pid"
export DOCKER_HOST="unix://$sock"

daemon_alive() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
    mkdir -p "$state"
    if daemon_alive; then
        echo "DOCKER_HOST=$DOCKER_HOST"
        return 0
    fi
    command -v dockerd >/dev/null || { echo "dockerd not installed (run tests/infra/install_system_deps.sh)" >&2; exit 3; }
    [[ $(id -u) -eq 0 ]] || { echo "dockerd needs root" >&2; exit 3; }
    # Own data root, exec root, pid file and socket: this daemon is independent of any other.
    # --bridge=none/--iptables=false: no host network changes; builds and runs use --network host.
    setsid dockerd \
        --data-root "$state/data-root" \
        --exec-root "$state/exec-root" \
        --pidfile "$pidfile" \
        --host "$DOCKER_HOST" \
        --bridge none --iptables=false --ip6tables=false --ip-masq=false \
        --storage-driver "${KDC_DOCKER_STORAGE_DRIVER:-overlay2}" \
        >"$state/dockerd.log" 2>&1 </dev/null &
    local pid=$!
    # A readiness wait, not a race: the bound only turns a daemon that never starts into an error.
    for _ in $(seq 1 240); do
        if docker version >/dev/null 2>&1; then
            # dockerd writes its pid file itself; fall back to the PID we started.
            [[ -s $pidfile ]] || echo "$pid" >"$pidfile"
            echo "DOCKER_HOST=$DOCKER_HOST"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "dockerd exited; last log lines:" >&2
            tail -n 20 "$state/dockerd.log" >&2
            exit 4
        fi
        sleep 0.5
    done
    echo "dockerd did not answer within 120 s; stopping it" >&2
    kill "$pid" 2>/dev/null || true
    exit 4
}

base() {
    local tag=${3:?usage: base STATE_DIR TAG}
    local tarball="$state/bookworm-rootfs.tar"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        return 0
    fi
    if [[ ! -s $tarball ]]; then
        local rootfs="$state/rootfs"
        rm -rf "$rootfs"
        # minbase + the Python the lock was compiled for (3.11, as in python:3.11-slim-bookworm).
        debootstrap --variant=minbase \
            --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
            bookworm "$rootfs" "${KDC_DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
            >"$state/debootstrap.log" 2>&1 \
            || { tail -n 20 "$state/debootstrap.log" >&2; exit 5; }
        # The official python image has `python3.11` on PATH as /usr/local/bin/python3.11;
        # here it is /usr/bin/python3.11, which the Dockerfile accepts as well.
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
        tar -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    docker import "$tarball" "$tag" >/dev/null
}

stop() {
    if [[ -f $pidfile ]]; then
        local pid
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 1 60); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$pidfile"
    fi
    # dockerd leaves its network namespace mounted under the exec root; release it (and
    # anything else mounted under STATE_DIR) so the folder can be deleted.
    awk -v root="$state/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r \
        | while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
}

case $action in
    start) start ;;
    base) base "$@" ;;
    stop) stop ;;
    *) usage ;;
esac
