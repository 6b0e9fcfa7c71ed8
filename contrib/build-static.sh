#!/usr/bin/env bash
# Builds stripped, statically linked ssecommander binaries for small boxes,
# each with the load client (`ssecommander bench`):
#   target/static/ssecommander-x86_64    (x86_64-unknown-linux-musl, rust-lld)
#   target/static/ssecommander-aarch64   (aarch64-unknown-linux-musl, rust-lld)
#   target/static/ssecommander-armv7     (armv7-unknown-linux-gnueabihf, static glibc)
# Needs: rustup targets of the three triples and the `rust-src` component,
# and for armv7 Debian's gcc-arm-linux-gnueabihf + libc6-dev-armhf-cross
# (linkers: .cargo/config.toml).
#
# At the release profile's opt-level 3 (the host build's speed), with std
# rebuilt for the target (`-Z build-std`) under the immediate-abort panic
# strategy: a panic aborts at once, without a message or backtrace, so std's
# panic hook and backtrace symboliser (about 370 KB on x86_64) are not
# linked in, nor unwind tables (nothing unwinds). Both are unstable
# cargo/rustc features: RUSTC_BOOTSTRAP=1 lets the stable toolchain use
# them, so the box binaries come from the very compiler that builds and
# tests the host binary (README, "Deploy"); tested with rustc 1.95.
# The armv7 binary is built at opt-level "s": it carries a static glibc
# (its .text is half again aarch64's), and at 3 it no longer fits under the
# limit once the terminal (contract v4 §10) and the one-stream page landed
# (968,752 bytes before them; 878,648 at "s"). SSECOMMANDER_OPT_LEVEL
# overrides the opt-level of every target (e.g. "s" for size, 3 for speed).
# Each binary must stay at or under 950,000 bytes; the script fails otherwise.
# The musl ones are linked with the functions an idle server runs first
# (contrib/link-idle-first.sh), which keeps their idle RSS low.
# Usage: contrib/build-static.sh [TRIPLE...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."

max_bytes=950000
out=target/static
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
fi
sysroot=$(rustc --print sysroot)
if [ ! -e "$sysroot/lib/rustlib/src/rust/library/std/Cargo.toml" ]; then
  echo "error: -Z build-std needs the standard library's source: rustup component add rust-src" >&2
  exit 1
fi
mkdir -p "$out"
status=0
for triple in "${targets[@]}"; do
  # --config joins these flags to the target's own in .cargo/config.toml
  # (RUSTFLAGS would replace them). They reach every crate built for the
  # target, std included, and not the build scripts, which run on the host.
  # No std features: they are the backtrace symboliser and the unwinder,
  # dead code under immediate-abort, so cargo need not compile them.
  # Without unwind tables the x86_64 binary is 38 KB smaller, and its idle
  # RSS about 20 KiB (the tables sit beside .rodata, mapped with it).
  # Own target directory: these flags differ from a plain cross build's.
  opt=${SSECOMMANDER_OPT_LEVEL:-}
  if [ -z "$opt" ]; then
    case $triple in
      armv7-*) opt=s ;;
      *) opt=3 ;;
    esac
  fi
  flags="'-Zunstable-options','-Cpanic=immediate-abort','-Cforce-unwind-tables=no'"
  # musl: linked by contrib/link-idle-first.sh, rust-lld placing the
  # functions of contrib/idle-functions.txt first, so that an idle server
  # keeps fewer of its pages (docs/DEPLOY.md, "Idle memory"). rustc would
  # guess the linker's kind from its name; here it is told (lld's arguments).
  # Cargo does not relink when only the list changed: the binary is then
  # removed, so the link (and the LTO before it) runs again.
  # -z max-page-size=65536: segments aligned to 64 KiB, so the kernel
  # (5.10+) loads the binary at a 64 KiB-aligned address. A page fault maps
  # the cached pages of its whole aligned 64 KiB window ("fault-around"),
  # and where the idle functions fell in those windows changed with each
  # start's random address: idle RSS 724-792 KiB over 7 starts, 660-664
  # over 8 with the alignment. The file is no larger (lld does not pad it).
  linker=()
  report=$PWD/target/box/$triple/idle-link
  case $triple in
    *-musl)
      flags="$flags,'-Clinker-flavor=ld.lld','-Clink-arg=-zmax-page-size=65536'"
      linker=(--config "target.$triple.linker='$PWD/contrib/link-idle-first.sh'")
      if ! cmp -s contrib/idle-functions.txt "$report/list"; then
        rm -f "target/box/$triple/release/ssecommander"
        find "target/box/$triple/release/deps" -maxdepth 1 -type f -name 'ssecommander-*' ! -name '*.*' -delete 2>/dev/null || true
      fi
      ;;
  esac
  SSECOMMANDER_IDLE_REPORT=$report CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt RUSTC_BOOTSTRAP=1 \
    cargo build --release --locked --target "$triple" --target-dir target/box \
    -Z build-std=std,panic_abort -Z build-std-features= \
    --config "target.$triple.rustflags=[$flags]" "${linker[@]}"
  name="ssecommander-${triple%%-*}"
  cp "target/box/$triple/release/ssecommander" "$out/$name"
  size=$(stat -c %s "$out/$name")
  echo "$out/$name: $size bytes"
  if [ ${#linker[@]} -gt 0 ]; then
    # Placed: the symbols of listed functions found in this build (a generic
    # function may have several). Far fewer than listed means a stale list:
    # contrib/idle-functions.sh makes a new one.
    listed=$(grep -c -v -e '^#' -e '^$' contrib/idle-functions.txt || true)
    found=0
    [ -f "$report/order" ] && found=$(wc -l <"$report/order")
    echo "$out/$name: idle functions first: $found symbols placed, $listed functions listed"
    if [ "$found" -eq 0 ] && [ "${listed:-0}" -gt 0 ]; then
      # Not an error (the binary is as good as without the list), but the
      # idle RSS is back to about the binary's size: say so.
      echo "warning: $out/$name: no listed function found; see contrib/link-idle-first.sh" >&2
    fi
  fi
  if [ "$size" -gt "$max_bytes" ]; then
    echo "error: $out/$name is larger than $max_bytes bytes" >&2
    status=1
  fi
done
exit "$status"
