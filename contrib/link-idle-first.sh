#!/usr/bin/env bash
# The linker of the musl box builds (contrib/build-static.sh): rust-lld, with
# the functions an idle server has run placed first in .text, so that the
# pages a waiting server has touched are few and together
# (docs/DEPLOY.md, "Idle memory").
#
# Why a wrapper: lld orders by exact symbol names, and a Rust symbol's name
# carries hashes that differ per target and toolchain. contrib/idle-functions.txt
# lists the functions by their demangled names, which carry none; only at link
# time, after LTO, are the real names known. So this script links once as
# asked, with a map (which names each symbol both ways), picks the listed
# functions' real names from it, and links again with
# `--symbol-ordering-file`. A link takes well under a second; LTO ran before.
#
# A stale list cannot break the build: a listed function that no longer
# exists is simply not found (the names given to lld all come from this very
# link), and with no list, or a failed first pass, it links as plain rust-lld.
# $SSECOMMANDER_IDLE_REPORT, if set, names a directory where it leaves the
# list it used, the ordering it gave lld and the final link's map (for
# build-static.sh and contrib/idle-functions.sh).
#
# rustc calls it with lld's own arguments (`-C linker-flavor=ld.lld`), and
# puts rust-lld on its PATH.
set -uo pipefail

list="$(dirname "$0")/idle-functions.txt"
report=${SSECOMMANDER_IDLE_REPORT:-}
tmp=$(mktemp -d) || exec rust-lld "$@"
trap 'rm -rf "$tmp"' EXIT

# The symbols of .text, one a line, as "mangled<TAB>demangled": lld's map
# lists each defined symbol on a line of its own, indented 16 columns past
# the 49 of addresses, sizes and alignment; the two maps differ only in
# their names, so their lines pair up.
text_symbols() { # map -> names of .text's symbols
  awk 'substr($0, 50, 1) != " " { out = substr($0, 50) }
       out == ".text" && substr($0, 50, 16) == "                " && substr($0, 66, 1) != " " { print substr($0, 66) }' "$1"
}
if [ -s "$list" ] && rust-lld "$@" -Map="$tmp/demangled.map" 2>/dev/null &&
  rust-lld "$@" --no-demangle -Map="$tmp/mangled.map" 2>/dev/null; then
  text_symbols "$tmp/mangled.map" >"$tmp/mangled"
  text_symbols "$tmp/demangled.map" >"$tmp/demangled"
  # In the list's order, every symbol of each listed function (a generic
  # function listed once may have several). LLVM names a specialised copy
  # of a function `NAME.N`, demangled `NAME (.N)`, N changing from build to
  # build: it is matched as NAME.
  paste "$tmp/mangled" "$tmp/demangled" |
    awk -F '\t' 'NR == FNR { if ($0 != "" && $0 !~ /^#/) { n++; want[$0] = n }; next }
                 { sub(/ \(\.[0-9]+\)$/, "", $2) }
                 $2 in want { print want[$2] "\t" $1 }' "$list" - |
    sort -s -n -k1,1 | cut -f2- >"$tmp/order"
fi
args=("$@")
if [ -s "$tmp/order" ]; then
  # Every name exists in this link, so lld has nothing to warn about; the
  # flag keeps it quiet should that ever change (a warning is not an error).
  args+=(--symbol-ordering-file="$tmp/order" --no-warn-symbol-ordering)
fi
if [ -n "$report" ] && mkdir -p "$report"; then
  args+=(-Map="$report/map")
  cp "$list" "$report/list" 2>/dev/null || : >"$report/list"
  cp "$tmp/order" "$report/order" 2>/dev/null || : >"$report/order"
fi
rust-lld "${args[@]}"
