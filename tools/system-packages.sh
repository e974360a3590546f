#!/bin/sh
# The system packages the test suite uses, installed when missing:
# PostgreSQL (a throwaway server tests the PostgreSQL gradebook).
# Needs root and apt-get (Debian, Ubuntu); elsewhere it says what is missing
# and the PostgreSQL tests are skipped with that reason.
set -eu
have_postgres() {
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1
}
if have_postgres; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing PostgreSQL (Debian's postgresql package) for the gradebook tests ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    # Debian starts a cluster of its own; the tests start their own servers.
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        for conf in /etc/postgresql/*/main; do
            [ -d "$conf" ] || continue
            version=$(basename "$(dirname "$conf")")
            pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
        done
    fi
else
    echo "note: PostgreSQL is not installed (and this is not root with apt-get):"
    echo "      the PostgreSQL gradebook tests will be skipped."
fi
