#!/usr/bin/env bash
# The README's test command: installs what the tests need and is missing, then runs pytest.
#
#   bash scripts/test.sh              # the whole suite
#   bash scripts/test.sh -k report    # arguments go to pytest
#
# Debian packages the tests use: a real ZooKeeper for the Dubbo tests (it brings Java),
# headless Chromium for the report's and the dashboard's browser tests, PostgreSQL (its initdb
# and pg_ctl: the store's tests start their own server), and a CJK font so that the report's
# screenshots show the Chinese prompts rather than boxes. They are installed through apt-get,
# with sudo when not root; when neither can be done, one line says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-wqy-zenhei)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && { [ -t 0 ] || sudo -n true 2>/dev/null; }; then
    as_root=(sudo)
  else
    as_root=(missing)
  fi
  if [ "${as_root[*]-}" = missing ] || ! command -v apt-get >/dev/null 2>&1 ||
     ! { "${as_root[@]}" apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${need[@]}" >/dev/null; }; then
    echo "scripts/test.sh: could not install ${need[*]}; install them (Debian/Ubuntu: sudo apt-get install ${need[*]}) or the tests that need them fail" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q -r requirements-dev.txt
.venv/bin/pip install -q --no-deps --no-build-isolation -e .
# schemathesis in a venv of its own (tests/test_service_fuzz.py runs its CLI): requirements.txt
# installs the Dubbo client, whose jsonrpcclient 3.x holds click below 8, and schemathesis needs 8.
python3 -m venv .venv-fuzz
.venv-fuzz/bin/pip install -q -r requirements-fuzz.txt
exec .venv/bin/python -m pytest "$@"
