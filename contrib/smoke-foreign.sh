#!/usr/bin/env bash
# Smoke test of the static binaries on foreign CPUs, run under Debian's
# qemu-user (package qemu-user: qemu-aarch64, qemu-arm; no binfmt needed).
# Over real sockets on 127.0.0.1, for each binary:
#   1. `echo hello` answers exactly the contract's bytes (stdout event, exit 0),
#      over HTTP/1.0 and chunked HTTP/1.1;
#   2. a client that disconnects stops its `sleep` command;
#   3. the binary's own load client (`bench`), run under the same emulator,
#      reads two `seq 1 1000` streams from it, every line and byte;
#   4. SIGTERM shuts the server down with exit status 0;
#   5. `bench --help` prints the load client's help.
# Build the binaries first: contrib/build-static.sh
# Usage: contrib/smoke-foreign.sh [RUNNER:BINARY ...]
#   default: qemu-aarch64:target/static/ssecommander-aarch64
#            qemu-arm:target/static/ssecommander-armv7
# RUNNER may be `native` to run a binary directly (x86_64 on an x86_64 host).
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=("$@")
if [ ${#pairs[@]} -eq 0 ]; then
  pairs=(qemu-aarch64:target/static/ssecommander-aarch64 qemu-arm:target/static/ssecommander-armv7)
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL [$label]: $*" >&2
  echo "--- server log:" >&2
  cat "$work/log" >&2 || true
  exit 1
}

# Polls `$@` every 0.1 s for at most $1 seconds (first argument).
wait_for() {
  local seconds=$1
  shift
  local tries=$((seconds * 10))
  while [ "$tries" -gt 0 ]; do
    if "$@"; then return 0; fi
    sleep 0.1
    tries=$((tries - 1))
  done
  return 1
}

# Prints the pids of processes whose argv is exactly `sleep MARKER`.
sleep_pids() {
  local marker=$1 file
  local -a args
  for file in /proc/[0-9]*/cmdline; do
    mapfile -d '' args 2>/dev/null <"$file" || continue
    if [ "${#args[@]}" -eq 2 ] && [ "${args[0]##*/}" = sleep ] && [ "${args[1]}" = "$marker" ]; then
      file=${file#/proc/}
      echo "${file%/cmdline}"
    fi
  done
}
has_sleep() { [ -n "$(sleep_pids "$1")" ]; }
no_sleep() { [ -z "$(sleep_pids "$1")" ]; }
url_printed() { grep -q '^ssecommander listening on http://' "$work/out"; }
server_gone() { ! kill -0 "$server_pid" 2>/dev/null; }

# Sends a GET for $2 to port $1 on file descriptor 5; $3: HTTP version
# (default 1.0). The server closes the connection after the answer.
send_get() {
  exec 5<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET %s HTTP/%s\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' \
    "$2" "${3:-1.0}" "$token" >&5
}

# Expected answer to `echo hello` for HTTP/$1: 1.0 ends at close, 1.1 is
# chunked (the chunk-size lines are what 32-bit builds once got wrong).
want_echo() {
  local stdout='id: 1\nevent: stdout\ndata: {"type":"stdout","out":"hello\\n"}\n\n'
  local exit='id: 2\nevent: exit\ndata: {"type":"exit","code":0}\n\n'
  printf 'HTTP/%s 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n' "$1"
  if [ "$1" = 1.1 ]; then
    printf 'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3d\r\n%b\r\n32\r\n%b\r\n0\r\n\r\n' "$stdout" "$exit"
  else
    printf 'Connection: close\r\n\r\n%b%b' "$stdout" "$exit"
  fi
}

smoke() {
  local runner=$1 binary=$2
  local -a run=("$runner" "$binary")
  [ "$runner" = native ] && run=("$binary")
  [ -x "$binary" ] || fail "no binary $binary (run contrib/build-static.sh)"
  token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$token" >"$work/token"
  : >"$work/out"
  "${run[@]}" --token-file "$work/token" --listen 127.0.0.1:0 >"$work/out" 2>"$work/log" &
  server_pid=$!
  wait_for 30 url_printed || fail "no URL line within 30 s"
  local port
  port=$(sed -n 's|^ssecommander listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$work/out")
  [ -n "$port" ] || fail "URL line unreadable: $(cat "$work/out")"

  # 1. The seed case, byte for byte, over HTTP/1.0 and HTTP/1.1.
  local version
  for version in 1.0 1.1; do
    send_get "$port" '/run?command=echo+hello' "$version"
    timeout 30 cat <&5 >"$work/got" || fail "no complete answer to echo hello within 30 s"
    exec 5<&-
    want_echo "$version" >"$work/want"
    cmp -s "$work/want" "$work/got" ||
      fail "echo hello, HTTP/$version: unexpected bytes; got:$(echo; od -c "$work/got" | head -30)"
    echo "ok [$label] echo hello over HTTP/$version: exact bytes"
  done

  # 2. A disconnect stops the command.
  local marker="1000.$$$RANDOM"
  send_get "$port" "/run?command=sleep+$marker"
  wait_for 30 has_sleep "$marker" || fail "sleep $marker never started"
  exec 5<&-
  if ! wait_for 15 no_sleep "$marker"; then
    local pid
    for pid in $(sleep_pids "$marker"); do kill -KILL "$pid" 2>/dev/null || true; done
    fail "sleep $marker still running 15 s after the client left"
  fi
  echo "ok [$label] disconnect stops the command"

  # 3. The load client of the same binary against its own server: two
  # streams of `seq 1 1000` (3,893 bytes each), both complete, every byte.
  local rc=0
  timeout 120 "${run[@]}" bench --streams 2 --duration 60 --command 'seq 1 1000' --json \
    "http://127.0.0.1:$port/?token=$token" >"$work/bench" 2>"$work/bench.err" || rc=$?
  [ "$rc" -eq 0 ] || fail "bench run: status $rc, $(cat "$work/bench" "$work/bench.err")"
  local field
  for field in '"completed":2,' '"failed":0,' '"payload_bytes":7786,' '"lines":2000,'; do
    grep -qF -- "$field" "$work/bench" || fail "bench run: no $field in $(cat "$work/bench")"
  done
  echo "ok [$label] bench: 2 streams of seq 1 1000 read whole"

  # 4. SIGTERM: clean shutdown, exit status 0.
  kill -TERM "$server_pid"
  wait_for 20 server_gone || fail "still running 20 s after SIGTERM"
  local status=0
  wait "$server_pid" || status=$?
  server_pid=
  [ "$status" -eq 0 ] || fail "exit status $status after SIGTERM"
  echo "ok [$label] SIGTERM exits 0"
  echo "   [$label] $(grep -m1 'containment' "$work/log" || echo 'no containment line')"

  # 5. Every box build carries the load client.
  rc=0
  "${run[@]}" bench --help >"$work/bench" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] || ! grep -q -- '--streams' "$work/bench"; then
    fail "bench --help: status $rc, $(head -3 "$work/bench")"
  fi
  echo "ok [$label] bench --help"
}

for pair in "${pairs[@]}"; do
  label=$pair
  smoke "${pair%%:*}" "${pair#*:}"
done
