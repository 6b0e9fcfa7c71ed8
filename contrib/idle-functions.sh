#!/usr/bin/env bash
# Regenerates contrib/idle-functions.txt: the functions the static x86_64
# binary runs from its start until it waits idle, which
# contrib/link-idle-first.sh places first in the musl box builds (docs/DEPLOY.md,
# "Idle memory").
#
# It builds target/static/ssecommander-x86_64 (contrib/build-static.sh),
# starts it under valgrind's lackey tool, which logs the address of every
# block of code run, and does what the referee's idle measurement does
# (../shared/bench/run.sh -w w5): waits until the port accepts a connection,
# then 0.5 s. The addresses logged up to then are mapped to functions with
# the map of that link (names demangled, so without the hashes that change
# with the target and the toolchain). Sorted by name, so a diff shows what
# changed. Run it when the start-up path changes; a stale list still builds
# (unknown names are skipped), it only leaves more of the binary resident.
# Needs: valgrind, and what build-static.sh needs. Usage: contrib/idle-functions.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."

port=${1:-3479}
triple=x86_64-unknown-linux-musl
bin=target/static/ssecommander-x86_64
map=target/box/$triple/idle-link/map
command -v valgrind >/dev/null || { echo "error: needs valgrind" >&2; exit 1; }
contrib/build-static.sh "$triple" >&2

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# --vex-guest-chase=no: else a block may run on into a function it calls,
# which then never shows in the log (musl's one-instruction __init_ssp did not).
valgrind --tool=lackey --trace-superblocks=yes --vex-guest-chase=no --log-file="$tmp/trace" \
  "$bin" --listen "127.0.0.1:$port" --no-auth >"$tmp/server.log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 300); do # up to 30 s: valgrind starts slowly
  kill -0 "$pid" 2>/dev/null || break
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "error: the server did not start under valgrind:" >&2
  cat "$tmp/server.log" "$tmp/trace" >&2
  exit 1
fi
sleep 0.5
# What ran until now is the idle path; what runs after SIGTERM is not.
idle_lines=$(wc -l <"$tmp/trace")
# Where the binary is mapped (position-independent: wherever valgrind put it).
base=$(awk -v bin="$(readlink -f "$bin")" '$6 == bin && $3 == "00000000" { split($1, r, "-"); print r[1]; exit }' "/proc/$pid/maps")
kill -TERM "$pid"
wait "$pid" || true
pid=""
[ -n "$base" ] || { echo "error: $bin not found in the server's memory map" >&2; exit 1; }

# Both as 16 hex digits, so that sort orders addresses: every block run
# ("B"), and every symbol of .text ("S", before a block at the same address).
head -n "$idle_lines" "$tmp/trace" | awk '$1 == "SB" { print $2 }' | sort -u |
  while read -r a; do
    offset=$((0x$a - 0x$base))
    [ "$offset" -ge 0 ] && printf '%016x B\n' "$offset"
  done >"$tmp/points"
# .text's symbols, and its end as a symbol without a name.
awk 'substr($0, 50, 1) != " " { out = substr($0, 50); if (out == ".text") end = $1 " " $3 }
     out == ".text" && substr($0, 50, 16) == "                " && substr($0, 66, 1) != " " { print $1 "\t" substr($0, 66) }
     END { split(end, e, " "); print "end\t" e[1] "\t" e[2] }' "$map" |
  while IFS=$'\t' read -r vma name size; do
    if [ "$vma" = end ]; then
      printf '%016x S\t\n' $((0x$name + 0x$size))
    else
      printf '%016x S\t%s\n' $((0x$vma)) "$name"
    fi
  done >>"$tmp/points"
# Each block belongs to the last symbol at or before it (none past .text),
# named without LLVM's " (.N)" suffix, as contrib/link-idle-first.sh matches.
# Added by hand: what a native start runs that valgrind's does not. The
# start-up probes clone vfork children (sharing our memory, so the pages
# they touch count in the server's RSS), which valgrind cannot run; the
# probes then fail under it, so neither the children's code nor the
# launcher, which a native start then uses, shows in the trace. Left where
# cargo put them, they kept one to two 64 KiB windows of cold code resident
# (found with `perf record -e page-faults -d` of a native start).
children='ssecommander::sys::spawn::clone_into_cgroup_works::exit_at_once
ssecommander::sys::spawn::launch::probe::unshare_and_exit
<ssecommander::sys::spawn::launch::Launcher>::collect'
{
  LC_ALL=C sort -k1,1 -k2,2r "$tmp/points" |
    awk -F '\t' '$1 ~ / S$/ { name = $2; sub(/ \(\.[0-9]+\)$/, "", name); next } name != "" { print name }'
  echo "$children"
} | LC_ALL=C sort -u >contrib/idle-functions.txt
echo "contrib/idle-functions.txt: $(wc -l <contrib/idle-functions.txt) functions" >&2
