#!/usr/bin/env bash
# Idempotent setup: system packages libvirt-python compiles against, a venv, the project.
# Root installs the Debian packages itself; a non-root user runs
#   sudo apt-get install -y libvirt-dev pkg-config gcc python3-venv
# once, then this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! pkg-config --exists libvirt 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing libvirt-dev and pkg-config (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq libvirt-dev pkg-config gcc >/dev/null
  else
    echo "libvirt-dev and pkg-config are missing: run 'sudo apt-get install -y libvirt-dev pkg-config gcc'" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "== installing compute and its dependencies into .venv"
  log=.venv/install.log
  if ! { .venv/bin/pip install --upgrade pip && .venv/bin/pip install -e '.[dev,nova]'; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "installing failed; the whole log is in $log" >&2
    exit 1
  fi
  rm -f .venv/.installed-*; touch "$stamp"
fi
mkdir -p var
