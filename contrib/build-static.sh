#!/usr/bin/env bash
# Builds stripped, statically linked ssecommander binaries for small boxes:
#   target/static/ssecommander-x86_64    (x86_64-unknown-linux-musl, rust-lld)
#   target/static/ssecommander-aarch64   (aarch64-unknown-linux-musl, rust-lld)
#   target/static/ssecommander-armv7     (armv7-unknown-linux-gnueabihf, static glibc)
# Needs: rustup targets of the three triples, and for armv7 Debian's
# gcc-arm-linux-gnueabihf + libc6-dev-armhf-cross (linkers: .cargo/config.toml).
# Optimised for size (opt-level "z", override with SSECOMMANDER_OPT_LEVEL):
# each binary must stay at or under 1 MB (1,000,000 bytes); the script fails otherwise.
# The armv7 build is without the load client (`bench`), see below.
# Usage: contrib/build-static.sh [TRIPLE...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."

max_bytes=1000000
out=target/static
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
fi
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${SSECOMMANDER_OPT_LEVEL:-z}"
mkdir -p "$out"
status=0
for triple in "${targets[@]}"; do
  # armv7's static glibc is ~200 KB larger than musl: that build leaves out
  # the load client (`ssecommander bench`, cargo feature `bench`) to stay
  # under the limit; the server is the same.
  features=()
  case $triple in armv7-*) features=(--no-default-features) ;; esac
  cargo build --release --locked --target "$triple" "${features[@]}"
  name="ssecommander-${triple%%-*}"
  cp "target/$triple/release/ssecommander" "$out/$name"
  size=$(stat -c %s "$out/$name")
  echo "$out/$name: $size bytes"
  if [ "$size" -gt "$max_bytes" ]; then
    echo "error: $out/$name is larger than $max_bytes bytes" >&2
    status=1
  fi
done
exit "$status"
