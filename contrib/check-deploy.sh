#!/usr/bin/env bash
# Checks the deploy files (docs/DEPLOY.md):
#   - systemd units: `systemd-analyze verify`, with ExecStart pointed at a
#     built binary; any message (an unknown key, a bad value) fails;
#   - OpenWrt init script: `sh -n`, shellcheck, and the UCI-to-flags mapping,
#     run under dash with stubs of OpenWrt's config_* / procd_* functions;
#   - the contrib shell scripts: `bash -n`, shellcheck.
# Needs: systemd (systemd-analyze), shellcheck, dash or another POSIX sh.
# Usage: contrib/check-deploy.sh [BINARY]   (default: target/static/ssecommander-x86_64)
set -euo pipefail
cd "$(dirname "$0")/.."

binary=$(realpath "${1:-target/static/ssecommander-x86_64}")
[ -x "$binary" ] || { echo "no binary $binary (run contrib/build-static.sh)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# systemd: verify copies whose ExecStart names a binary that exists here.
cp contrib/systemd/ssecommander.socket "$work/"
sed "s|^ExecStart=/usr/local/bin/ssecommander|ExecStart=$binary|" \
  contrib/systemd/ssecommander.service >"$work/ssecommander.service"
if ! systemd-analyze verify --man=no "$work/ssecommander.socket" "$work/ssecommander.service" >"$work/verify" 2>&1 ||
  [ -s "$work/verify" ]; then
  echo "systemd-analyze verify failed:" >&2
  cat "$work/verify" >&2
  exit 1
fi
echo "ok systemd units verify"

# Shell scripts.
init=contrib/openwrt/ssecommander.init
sh -n "$init"
shellcheck "$init"
for script in contrib/*.sh .ci/run; do
  bash -n "$script"
done
shellcheck contrib/*.sh .ci/run
echo "ok shell scripts: sh -n / bash -n, shellcheck"

# The init script's mapping, with OpenWrt's functions stubbed. UCI values
# come from variables UCI_<option>; lists from UCI_LIST_<option>.
cat >"$work/stubs.sh" <<'STUBS'
config_get() { eval "v=\${UCI_$3-}"; [ -n "$v" ] || v="${4-}"; eval "$1=\$v"; }
config_get_bool() { config_get "$@"; }
config_list_foreach() { eval "l=\${UCI_LIST_$2-}"; for item in $l; do "$3" "$item"; done; }
network_get_ipaddr() { [ "$2" = lan ] && eval "$1=192.0.2.1"; }
procd_open_instance() { :; }
procd_close_instance() { :; }
procd_set_param() { k=$1; shift; if [ "$k" = command ]; then CMD="$*"; else PARAMS="$PARAMS $k=$*;"; fi; }
procd_append_param() { shift; CMD="$CMD $*"; }
CMD=; PARAMS=
STUBS
token="$work/token"
echo 0123456789abcdef0123456789abcdef >"$token"
expect_mapping() {
  local want=$1 got
  shift
  # shellcheck disable=SC2016 # expanded by the inner sh
  got=$(env "$@" UCI_enable=1 UCI_token_file="$token" sh -c '. "$1"; . "$2"; start_instance main; echo "$CMD |$PARAMS"' \
    sh "$work/stubs.sh" "$init")
  if [ "$got" != "$want" ]; then
    printf 'init script mapping:\n want: %s\n  got: %s\n' "$want" "$got" >&2
    exit 1
  fi
}
expect_mapping "/usr/bin/ssecommander --listen 192.0.2.1:3000 --token-file $token | env=RUST_LOG=info; stdout=1; stderr=1; respawn=; term_timeout=10;"
expect_mapping "/usr/bin/ssecommander --listen 10.0.0.1:8080 --token-file $token --allow uptime --allow df --allow-host openwrt.lan --timeout 60 --max-procs 4 --cwd /tmp | env=RUST_LOG=debug; stdout=1; stderr=1; respawn=; term_timeout=10;" \
  UCI_listen=10.0.0.1:8080 UCI_LIST_allow="uptime df" UCI_LIST_allow_host=openwrt.lan UCI_timeout=60 \
  UCI_max_procs=4 UCI_cwd=/tmp UCI_log_level=debug
expect_mapping "/usr/bin/ssecommander --listen 192.0.2.1:3001 --token-file $token | env=RUST_LOG=info; stdout=1; stderr=1; respawn=; term_timeout=10;" \
  UCI_port=3001
echo "ok OpenWrt init script maps UCI options to flags"
