#!/usr/bin/env bash
# Server CPU per byte on the jobs path (contract §7): POST /jobs, then N
# viewers read GET /jobs/ID/events to the end, each checked byte for byte by
# the shared referee's probe. Compare with /run in the same run.
#
#   benches/jobs-fanout.sh BIN [VIEWERS...]      e.g. benches/jobs-fanout.sh target/release/ssecommander 1 10
#
# Env: BENCH (the referee's bench/ folder, default /work/benchrun/bench),
# FILE (default $BENCH/data/lines100.txt), REPEAT (times the file is cat'ed,
# default 4), FORMAT (json|raw, default json), PORT (default 3790).
# Prints one line per run: viewers, server CPU s, payload GB per viewer,
# CPU s per GB of one viewer's stream, and per GB delivered (all viewers).
# The job's command sleeps WAIT s (default 1) first so every viewer is attached (and
# caught up) before the first byte. The server is stopped by its PID.
set -u
BIN=$(realpath "$1"); shift
VIEWERS=("${@:-1}")
BENCH=${BENCH:-/work/benchrun/bench}
PROBE=$BENCH/probe/target/release/probe
FILE=${FILE:-$BENCH/data/lines100.txt}
REPEAT=${REPEAT:-4}
FORMAT=${FORMAT:-json}
PORT=${PORT:-3790}
SIZE=$(stat -c %s "$FILE")
FILES=""; for ((i = 0; i < REPEAT; i++)); do FILES="$FILES $FILE"; done
EXPECT=$((SIZE * REPEAT))
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# A cap on the server's address space: a leak ends this run, not the box.
(ulimit -v "${VMEM_KB:-4000000}"; exec "$BIN" --listen "127.0.0.1:$PORT" --no-auth --max-conns 2000) \
  >/tmp/jobs-fanout-server.log 2>&1 &
SPID=$!
trap 'kill -TERM $SPID 2>/dev/null; sleep 0.5; kill -KILL $SPID 2>/dev/null' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

for n in "${VIEWERS[@]}"; do
  cmd="sh -c 'sleep ${WAIT:-1}; exec cat$FILES'"
  enc=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$cmd")
  id=$(curl -s -X POST "http://127.0.0.1:$PORT/jobs?command=$enc" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
  before=$(cpu_ticks $SPID)
  pids=()
  for ((v = 0; v < n; v++)); do
    "$PROBE" throughput "http://127.0.0.1:$PORT" --target "/jobs/$id/events?format=$FORMAT" \
      --expect-bytes "$EXPECT" >"/tmp/jobs-fanout-$v.json" 2>/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}"
  after=$(cpu_ticks $SPID)
  complete=$(python3 -c 'import json,sys
ok=[json.load(open(f"/tmp/jobs-fanout-{v}.json")).get("payload_complete") for v in range(int(sys.argv[1]))]
print(sum(1 for o in ok if o))' "$n")
  python3 -c 'import sys
n,t,tck,b,c=int(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]),sys.argv[5]
cpu=t/tck; gb=b/1e9
print(f"viewers {n} format {sys.argv[6]}: server CPU {cpu:.2f} s, {gb:.2f} GB per viewer, {cpu/gb:.3f} s/GB of one stream, {cpu/gb/n:.3f} s/GB delivered, complete {c}/{n}")' \
    "$n" "$((after - before))" "$TCK" "$EXPECT" "$complete" "$FORMAT"
done
