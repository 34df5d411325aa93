#!/usr/bin/env bash
# The driver on a real hypervisor: QEMU (TCG, software emulation) under libvirtd.
#   scripts/real-hypervisor.sh up      install what is missing, start the daemons, build the guest
#   scripts/real-hypervisor.sh test    run tests/real against qemu:///system (after up)
#   scripts/real-hypervisor.sh down    destroy leftover guests, stop every daemon we started, by pid
#   scripts/real-hypervisor.sh run     up + test + down (make real-hypervisor); PYTEST_ARGS are passed on
#   scripts/real-hypervisor.sh ci      the short version CI runs: the lifecycle test only, and a
#                                      notice instead of a failure when the machine cannot set up
# Two "hosts" on one machine: the system daemon (qemu:///system) and a session daemon of the
# unprivileged user compute-session with its own host_uuid (qemu-tcg.md A3.1). Root only.
# Steps and measurements: /work/shared/reference/qemu-tcg.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REAL=$ROOT/var/real
RUN=$REAL/run                      # pid files of every process this script starts
SESSION_USER=compute-session
SESSION_HOME=/var/lib/cs            # short: QEMU's unix socket paths under it must fit 108 bytes
SYSTEM_URI=qemu:///system
PACKAGES="qemu-utils libvirt-daemon-driver-qemu libvirt-daemon qemu-system-x86 libvirt-clients"

log() { echo "== $*"; }

session_env() {
  local uid; uid=$(id -u "$SESSION_USER")
  echo "HOME=$SESSION_HOME XDG_RUNTIME_DIR=/run/user/$uid XDG_CONFIG_HOME=$SESSION_HOME"
}
session_uri() { echo "qemu+unix:///session?socket=/run/user/$(id -u "$SESSION_USER")/libvirt/libvirt-sock"; }

install() {
  local missing=""
  for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # qemu-utils first: libvirtd started without qemu-img cannot snapshot (qemu-tcg.md)
    apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
  fi
  # Debian's libvirtd resolves its default user before reading qemu.conf: the user that
  # libvirt-daemon-system's postinst would create must exist.
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt \
    -s /usr/sbin/nologin libvirt-qemu
  id "$SESSION_USER" >/dev/null 2>&1 || useradd -r -d "$SESSION_HOME" -s /usr/sbin/nologin "$SESSION_USER"
  if ! grep -q "compute real-hypervisor" /etc/libvirt/qemu.conf 2>/dev/null; then
    [ -f /etc/libvirt/qemu.conf ] && cp -n /etc/libvirt/qemu.conf /etc/libvirt/qemu.conf.orig
    printf '# compute real-hypervisor: guests run as root, no security driver\nuser = "root"\ngroup = "root"\nsecurity_driver = "none"\n' \
      > /etc/libvirt/qemu.conf
  fi
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() {   # start NAME CMD...: in the background, its pid recorded (the daemons run in front)
  local name=$1; shift
  if alive "$name"; then return; fi
  "$@" >"$RUN/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
}

wait_socket() {
  for _ in $(seq 100); do [ -S "$1" ] && return; sleep 0.05; done
  echo "no socket $1; see $RUN/*.log" >&2; return 1
}

up() {
  local t0=$SECONDS
  install
  mkdir -p "$RUN" "$REAL/instances" "$REAL/volumes" "$REAL/images"
  chmod 755 "$REAL" "$REAL/instances"
  start virtlogd virtlogd
  start libvirtd libvirtd
  wait_socket /run/libvirt/libvirt-sock
  # the second host: a session daemon of an unprivileged user, with its own host uuid
  local uid; uid=$(id -u "$SESSION_USER")
  mkdir -p "/run/user/$uid" "$SESSION_HOME/libvirt"
  echo 'host_uuid = "5b2f1c2e-0000-4000-8000-000000000002"' > "$SESSION_HOME/libvirt/libvirtd.conf"
  chown -R "$SESSION_USER" "/run/user/$uid" "$SESSION_HOME"
  chmod 700 "/run/user/$uid"
  start session-virtlogd setpriv --reuid "$uid" --regid "$(id -g "$SESSION_USER")" --init-groups \
    env $(session_env) virtlogd
  wait_socket "/run/user/$uid/libvirt/virtlogd-sock"
  start session-libvirtd setpriv --reuid "$uid" --regid "$(id -g "$SESSION_USER")" --init-groups \
    env $(session_env) libvirtd
  wait_socket "/run/user/$uid/libvirt/libvirt-sock"
  bash scripts/tiny-guest.sh "$REAL/images"
  chmod -R a+rwX "$REAL/images" "$REAL/instances" "$REAL/volumes"
  virsh -q -c "$SYSTEM_URI" version | sed -n 3p
  virsh -q -c "$(session_uri)" uri
  log "real hypervisor up in $((SECONDS - t0)) s: $SYSTEM_URI and $(session_uri)"
}

env_for_tests() {
  echo COMPUTE_REAL_LIBVIRT_URI=$SYSTEM_URI
  echo "COMPUTE_REAL_SECOND_URI=$(session_uri)"
  echo COMPUTE_REAL_IMAGES_DIR="$REAL/images"
  echo COMPUTE_REAL_INSTANCES_DIR="$REAL/instances"
  echo COMPUTE_REAL_QEMU_PID_DIR=/run/libvirt/qemu
}

run_tests() {
  [ -x .venv/bin/python ] || bash scripts/bootstrap.sh
  # shellcheck disable=SC2046
  env $(env_for_tests) .venv/bin/python -m pytest -v -s tests/real ${PYTEST_ARGS:-}
}

stop_pid() {   # stop NAME: SIGTERM by the recorded pid, wait, then SIGKILL
  local name=$1 pid
  [ -f "$RUN/$name.pid" ] || return 0
  pid=$(cat "$RUN/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped $name (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
}

down() {
  # Guests outlive libvirtd (by design): destroy those left by an interrupted run first.
  local uri dom
  for uri in "$SYSTEM_URI" "$(session_uri 2>/dev/null || true)"; do
    [ -n "$uri" ] || continue
    for dom in $(virsh -q -c "$uri" list --all --name 2>/dev/null | grep '^instance-' || true); do
      virsh -q -c "$uri" destroy "$dom" >/dev/null 2>&1 || true
      virsh -q -c "$uri" undefine --managed-save --snapshots-metadata "$dom" >/dev/null 2>&1 || true
      log "removed leftover guest $dom from $uri"
    done
  done
  for name in session-libvirtd session-virtlogd libvirtd virtlogd; do stop_pid "$name"; done
}

case "${1:-run}" in
  up) up ;;
  test) run_tests ;;
  down) down ;;
  env) env_for_tests ;;
  run)
    trap down EXIT
    up
    run_tests
    ;;
  ci)
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
      echo "== real hypervisor: skipped (needs root and apt-get; see README)"; exit 0
    fi
    trap down EXIT
    if ! bash "$ROOT/scripts/real-hypervisor.sh" up >"$ROOT/var/real-setup.log" 2>&1; then
      echo "== real hypervisor: skipped, this machine could not set it up (var/real-setup.log)"
      exit 0
    fi
    PYTEST_ARGS="-k every_operation" run_tests
    ;;
  *) echo "usage: $0 up|test|down|run|ci|env" >&2; exit 2 ;;
esac
