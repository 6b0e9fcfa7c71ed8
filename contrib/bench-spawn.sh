#!/usr/bin/env bash
# W3 (spawning `true`) side by side, interleaved: each repetition runs every
# server of SPEC once per workload through the referee's run.sh, then prints
# the median req/s and server CPU of each. Compare only within one run.
#
#   SPEC=servers.txt contrib/bench-spawn.sh OUT.jsonl "w3-c16-ka w3-c1" 3
#
# SPEC: one server a line, NAME|START ({port} is replaced); a NAME starting
# with relay runs only w3-c1 (the C relay's fixed command), e.g.
#   main|/tmp/ss-main --listen 127.0.0.1:{port} --no-auth --max-procs 20000 --max-conns 20000
#   axum|../shared/peers/axum-sse/target/release/axum-sse --port {port}
#   relay|../shared/bench/bin/relay {port} true
set -u
BENCH=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
OUT=$1 WLS=$2 REPS=${3:-3}
port=${PORT0:-3600}
for rep in $(seq "$REPS"); do
  for wl in $WLS; do
    while IFS='|' read -r name start; do
      [[ -z $name ]] && continue
      [[ $name == relay* && $wl != w3-c1 ]] && continue
      target=(); [[ $name == relay* ]] && target=(-t /)
      "$BENCH/run.sh" -n "$name" -s "$start" -w "$wl" -p $((port++)) -r "$rep" -o "$OUT" "${target[@]}" >/dev/null 2>&1
    done <"$SPEC"
  done
done
python3 - "$OUT" <<'PY'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["workload"], r["name"])].append((r["probe"].get("req_per_s"), r["server"].get("cpu_frac")))
for (wl, name), v in sorted(runs.items()):
    rates = [x[0] for x in v if x[0] is not None]
    print(f"{wl:10} {name:16} req/s {[round(x) for x in rates]} median {round(statistics.median(rates))}"
          f"  cpu {[x[1] for x in v]}")
PY
