#!/bin/sh
# The system packages the test suite uses, installed when missing:
# * PostgreSQL (a throwaway server tests the PostgreSQL gradebook);
# * Chromium (Debian's `chromium`: the report page and the formgrader are
#   tried in a real headless browser, driven by playwright through
#   `executable_path`; never `playwright install`, which downloads) and
#   fonts with Hangul (`fonts-noto-cjk`) for the Korean lesson's figures.
# Needs root and apt-get (Debian, Ubuntu); elsewhere it says what is missing
# and the tests that need it are skipped with that reason.
set -eu
missing=""
if ! { ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; }; then
    missing="$missing postgresql"
fi
if ! command -v chromium >/dev/null 2>&1; then
    missing="$missing chromium"
fi
if ! ls /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc >/dev/null 2>&1; then
    missing="$missing fonts-noto-cjk"
fi
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages for the tests:$missing ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    # Debian starts a PostgreSQL cluster of its own; the tests start their own.
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        for conf in /etc/postgresql/*/main; do
            [ -d "$conf" ] || continue
            version=$(basename "$(dirname "$conf")")
            pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
        done
    fi
else
    echo "note: missing system packages (and this is not root with apt-get):$missing"
    echo "      the tests that need them will be skipped."
fi
