#!/usr/bin/env bash
# Side by side: billbox against syslog-ng 3.38 and rsyslog 8.2302 on one
# workload (docs/performance.md, "Side by side with syslog-ng and rsyslog").
#
#   bash benches/compare.sh [arguments for the bench]
#
# Environment: COMPARE_RECORDS (default 200000), COMPARE_TIMEOUT_S (120),
# COMPARE_STALL_S (5), COMPARE_CUTS (5: figure 5's power cuts a column,
# which need root and /dev/fuse), COMPARE_COLUMNS (e.g.
# billbox-1,syslog-ng-disk), COMPARE_PEERS_DIR (default target/compare-peers).
#
# The peers: Debian's syslog-ng-core and rsyslog cannot be installed side by
# side (both provide and conflict with system-log-daemon), and installing
# either would replace the system's logger and register its service. So this
# script fetches the two packages with `apt-get download`, installs only
# their shared libraries with `apt-get install --no-upgrade`, and unpacks the
# packages with `dpkg-deb -x` into COMPARE_PEERS_DIR. Unpacking runs no
# maintainer script: no service is installed or started and the system's
# logger is left alone. The bench runs each peer in the foreground with its
# own config, pid file and queue directories under a temporary directory,
# on 127.0.0.1 ports picked free, and stops it by pid. When the unpacked
# copy is missing and cannot be fetched (not root, no apt), the bench uses a
# syslog-ng or rsyslogd found on the system, or skips that peer.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
peers="${COMPARE_PEERS_DIR:-$root/target/compare-peers}"
export COMPARE_PEERS_DIR="$peers"
export DEBIAN_FRONTEND=noninteractive

updated=0
# fetch PACKAGE PATH-OF-ITS-PROGRAM
fetch() {
    local pkg="$1" program="$2" work deb deps
    if [ -x "$peers/$program" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "compare.sh: $pkg is not in $peers and fetching it needs root and apt-get" >&2
        return 0
    fi
    work="$(mktemp -d)"
    chmod 0777 "$work" # apt's download sandbox user writes here
    if ! (cd "$work" && apt-get download -q "$pkg"); then
        if [ "$updated" = 0 ]; then
            apt-get update -q
            updated=1
        fi
        (cd "$work" && apt-get download -q "$pkg")
    fi
    deb="$(ls "$work/${pkg}"_*.deb)"
    # Its dependencies that are missing: the first of each alternative,
    # without versions.
    deps=""
    for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
        sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep -v '^$'); do
        if ! dpkg-query -W -f='${Status}\n' "$dep" 2>/dev/null | grep -q 'install ok installed'; then
            deps="$deps $dep"
        fi
    done
    if [ -n "$deps" ]; then
        # shellcheck disable=SC2086 # one word per package
        apt-get install -y -q --no-install-recommends --no-upgrade $deps
    fi
    mkdir -p "$peers"
    dpkg-deb -x "$deb" "$peers"
    rm -rf "$work"
    echo "compare.sh: unpacked $(basename "$deb") into $peers"
}

fetch syslog-ng-core usr/sbin/syslog-ng
fetch rsyslog usr/sbin/rsyslogd

cd "$root"
exec cargo bench --bench compare -- "$@"
