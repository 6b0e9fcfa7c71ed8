#!/bin/bash
# One W4 hold (1000 streams, an emitter line every 100 ms for 10 s) against
# one server, with the server's system calls per delivered line counted by
# perf's syscall tracepoints (its own threads only, not its children), its
# context switches (all threads) and CPU seconds (/proc/PID/stat).
# perf slows the server a little: compare CPU only between runs made alike.
#
#   contrib/w4-syscalls.sh 'START COMMAND with {port}' PORT [OUT_PREFIX]
#   e.g. contrib/w4-syscalls.sh "$PWD/target/release/ssecommander --listen 127.0.0.1:{port} \
#          --no-auth --max-procs 20000 --max-conns 20000" 4190
#        contrib/w4-syscalls.sh "$PWD/../shared/peers/axum-sse/target/release/axum-sse --port {port}" 4191
#        gcc -O2 -o /tmp/w4-floor contrib/w4-floor.c && contrib/w4-syscalls.sh "/tmp/w4-floor {port}" 4192
# Needs perf (root or perf_event_paranoid <= 1) and ../shared/bench built.
set -u
CMD=$1; PORT=$2; OUT=${3:-/tmp/w4-syscalls}
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../shared/bench" && pwd)"
ulimit -n 20000
setsid bash -c "exec ${CMD//\{port\}/$PORT}" >"$OUT.server.log" 2>&1 &
SP=$!
trap 'kill "$SP" 2>/dev/null; wait "$SP" 2>/dev/null' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
cpu() { awk '{print $14 + $15}' "/proc/$SP/stat"; }
ctx() { cat /proc/"$SP"/task/*/status | awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v, n}'; }
events=raw_syscalls:sys_enter
for s in epoll_wait epoll_pwait read write writev sendto sendmsg recvfrom epoll_ctl futex close; do
  events="$events,syscalls:sys_enter_$s"
done
c0=$(cpu); read -r v0 n0 < <(ctx)
perf stat -x, --no-inherit -e "$events" -p "$SP" -o "$OUT.perf" &
PP=$!
"$BENCH/probe/target/release/probe" hold "http://127.0.0.1:$PORT" 1000 --secs 10 \
  --emitter "$BENCH/bin/emitter" >"$OUT.hold.json"
c1=$(cpu); read -r v1 n1 < <(ctx)
kill -INT "$PP"; wait "$PP"
lines=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['lines'])" "$OUT.hold.json")
tick=$(getconf CLK_TCK)
echo "cpu_s $(echo "scale=2; ($c1 - $c0) / $tick" | bc) lines $lines switches voluntary $((v1 - v0)) involuntary $((n1 - n0))"
awk -F, -v n="$lines" '$1 > 0 { printf "  %-34s %9d  %.3f per line\n", $3, $1, $1 / n }' "$OUT.perf"
