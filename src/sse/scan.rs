//! Finding the bytes an encoder acts on — line ends for raw, every byte
//! JSON escapes — 64 bytes at a time, as a bitmask.
//!
//! One pass finds them all: raw lines end at CR or LF; JSON escapes bytes
//! below 0x20 (LF, CR, tab, ESC…), `"` and `\\`, so its rare control bytes
//! need no pass of their own. A block's mask comes from vector compares
//! (AVX2 or SSE2 on x86_64, chosen at run time) or from a portable word-
//! at-a-time version of the same compares; its set bits become the places
//! [`each_hit`] hands on.
//! The vector code is the one `unsafe` outside `sys/`, and stays in this
//! file: each block says why it is sound, and `fuzz/fuzz_targets/line_scan.rs`
//! holds every level to the portable scanner and to a plain byte filter.
//!
//! Searching per line (a `memchr` per line end) paid a searcher's start-up
//! cost each time: on 100-byte lines that was a third of the encoder's work.

/// Bytes per block: one `u64` mask, one bit per byte.
const BLOCK: usize = 64;

/// Which bytes a scan finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needles {
    /// CR and LF, where a raw `data:` line ends.
    LineEnds,
    /// What a JSON string escapes (RFC 8259 §7): bytes below 0x20, `"`, `\\`.
    JsonEscapes,
}

impl Needles {
    /// True if `byte` is one of these needles: the definition every level
    /// is checked against.
    #[cfg(any(test, feature = "harness"))]
    pub(crate) fn matches(self, byte: u8) -> bool {
        match self {
            Needles::LineEnds => byte == b'\n' || byte == b'\r',
            Needles::JsonEscapes => byte < 0x20 || byte == b'"' || byte == b'\\',
        }
    }
}

/// How a block's mask is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// 32-byte vector compares (x86_64 with AVX2, detected at run time).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    /// 16-byte vector compares (every x86_64 CPU has SSE2).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Sse2,
    /// Eight bytes per 64-bit word, on any CPU (on x86_64, only the checks
    /// that compare the levels ask for it).
    #[cfg_attr(all(target_arch = "x86_64", not(any(test, feature = "harness"))), allow(dead_code))]
    Portable,
}

impl Level {
    /// The fastest level this CPU runs (std caches the CPU's answer).
    pub(crate) fn detected() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
            Level::Sse2
        }
        #[cfg(not(target_arch = "x86_64"))]
        Level::Portable
    }

    /// Every level this CPU runs, the portable one first (for the checks
    /// that compare them).
    #[cfg(any(test, feature = "harness"))]
    pub(crate) fn available() -> Vec<Level> {
        #[cfg(target_arch = "x86_64")]
        {
            let mut levels = vec![Level::Portable, Level::Sse2];
            if std::is_x86_feature_detected!("avx2") {
                levels.push(Level::Avx2);
            }
            levels
        }
        #[cfg(not(target_arch = "x86_64"))]
        vec![Level::Portable]
    }
}

/// Blocks one call scans: a call per KiB of text, and the places of its
/// needles fit in a 2 KiB array on the stack.
const BATCH: usize = 16;

/// True if every byte of `text` is below 0x80: the check before UTF-8
/// validation, which plain text never needs. With AVX2, 128 bytes per step
/// (std's `is_ascii` takes 16): it was a tenth of the raw encoder's work.
#[inline]
pub(crate) fn is_ascii(text: &[u8]) -> bool {
    match Level::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 code runs only where the CPU reported AVX2.
        Level::Avx2 => unsafe { x86::is_ascii_avx2(text) },
        _ => text.is_ascii(),
    }
}

/// Calls `f` with the place of each of `needles` in `bytes`, in increasing
/// order, scanned at the fastest level this CPU runs.
#[inline]
pub(crate) fn each_hit(bytes: &[u8], needles: Needles, f: impl FnMut(usize)) {
    each_hit_at(bytes, needles, Level::detected(), f);
}

/// [`each_hit`] at `level`, or, on a CPU without it, at the fastest level
/// it has below it: a vector level is never run where it is missing.
///
/// One call finds the places in a batch of [`BATCH`] blocks (a vector
/// level's code cannot be inlined into code built for any x86_64), then a
/// plain loop hands them to `f`, which is compiled into that loop.
#[inline]
pub(crate) fn each_hit_at(bytes: &[u8], needles: Needles, level: Level, mut f: impl FnMut(usize)) {
    let level = match (level, Level::detected()) {
        (Level::Avx2, Level::Avx2) => Level::Avx2,
        #[cfg(target_arch = "x86_64")]
        (Level::Avx2 | Level::Sse2, _) => Level::Sse2,
        _ => Level::Portable,
    };
    // A short text (a quiet command's line) is one block: it fills the
    // places of one block, not a batch's 2 KiB array zeroed first (that
    // zeroing was a tenth of the loop's work per 20-byte line). One loop
    // for both sizes, so `f` has one call site and is compiled into it:
    // with two, the encoder's per-line work became a call per line.
    let mut one_block = [0u16; BLOCK];
    let mut batch_places;
    let places: &mut [u16] = if bytes.len() <= BLOCK {
        &mut one_block
    } else {
        batch_places = [0u16; BATCH * BLOCK];
        &mut batch_places
    };
    let mut start = 0;
    while start < bytes.len() {
        let batch = &bytes[start..bytes.len().min(start + places.len())];
        let found = find_into(batch, needles, level, places);
        for &place in &places[..found] {
            f(start + usize::from(place));
        }
        start += batch.len();
    }
}

/// [`find`] into `places`, one block's or a batch's worth.
#[inline(always)]
fn find_into(batch: &[u8], needles: Needles, level: Level, places: &mut [u16]) -> usize {
    match <&mut [u16; BLOCK]>::try_from(&mut *places) {
        Ok(one_block) => find(batch, needles, level, one_block),
        Err(_) => match <&mut [u16; BATCH * BLOCK]>::try_from(places) {
            Ok(batch_places) => find(batch, needles, level, batch_places),
            Err(_) => 0,
        },
    }
}

/// Writes the places of `needles` in `batch` (at most `N` bytes: a batch
/// of [`BATCH`] blocks, or one block) into `places`; returns how many.
#[inline(never)]
fn find<const N: usize>(batch: &[u8], needles: Needles, level: Level, places: &mut [u16; N]) -> usize {
    match (needles, level) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `each_hit_at` picks Avx2 only where the CPU reported AVX2.
        (Needles::LineEnds, Level::Avx2) => unsafe { x86::find_avx2::<false, N>(batch, places) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        (Needles::JsonEscapes, Level::Avx2) => unsafe { x86::find_avx2::<true, N>(batch, places) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE2 is part of x86_64 itself: every such CPU has it.
        (Needles::LineEnds, Level::Sse2) => unsafe { x86::find_sse2::<false, N>(batch, places) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        (Needles::JsonEscapes, Level::Sse2) => unsafe { x86::find_sse2::<true, N>(batch, places) },
        (Needles::LineEnds, _) => find_with(batch, places, portable_mask::<false>),
        (Needles::JsonEscapes, _) => find_with(batch, places, portable_mask::<true>),
    }
}

/// [`find`] with `mask` giving each block's needles as bits. A last block
/// shorter than [`BLOCK`] is padded with spaces (no level's needle) and the
/// padding's bits cleared.
#[inline(always)]
fn find_with<const N: usize>(batch: &[u8], places: &mut [u16; N], mask: impl Fn(&[u8; BLOCK]) -> u64) -> usize {
    let mut blocks = batch.chunks_exact(BLOCK);
    let mut found = 0;
    let mut put = |start: usize, mut bits: u64| {
        while bits != 0 {
            // At most one place per byte of the batch: `found` stays in bounds.
            places[found] = (start + bits.trailing_zeros() as usize) as u16;
            found += 1;
            bits &= bits - 1;
        }
    };
    let mut start = 0;
    for block in &mut blocks {
        if let Ok(block) = <&[u8; BLOCK]>::try_from(block) {
            put(start, mask(block));
        }
        start += BLOCK;
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let mut block = [b' '; BLOCK];
        block[..rest.len()].copy_from_slice(rest);
        put(start, mask(&block) & ((1u64 << rest.len()) - 1));
    }
    found
}

/// Bit `i` set where `block[i]` is a needle, without vector instructions:
/// eight bytes per `u64`, with exact per-byte tests (no carry crosses a
/// byte), then the eight flags gathered into eight bits by one multiply.
fn portable_mask<const JSON: bool>(block: &[u8; BLOCK]) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `w` that is zero, and no other bit.
    let zero = |w: u64| !(((w & !HI) + !HI) | w) & HI;
    let mut mask = 0;
    for (i, word) in block.chunks_exact(8).enumerate() {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        let w = u64::from_le_bytes(le);
        let flags = if JSON {
            zero(w & (LO * 0xe0)) | zero(w ^ (LO * u64::from(b'"'))) | zero(w ^ (LO * u64::from(b'\\')))
        } else {
            zero(w ^ (LO * u64::from(b'\n'))) | zero(w ^ (LO * u64::from(b'\r')))
        };
        // The flag of byte j is bit 8j + 7; the multiply moves it to bit 56 + j.
        let bits = ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        mask |= bits << (8 * i);
    }
    mask
}

/// The vector levels. Written for Rust 1.85 (the crate's MSRV): there a
/// `#[target_feature]` function must be an `unsafe fn` and every intrinsic
/// is one, so each function here is `unsafe` to call (the CPU must have its
/// feature: the callers' `SAFETY:` lines say why it does) and its body, an
/// unsafe context, calls intrinsics directly; its only memory reads are the
/// unaligned loads, each within the array it is given.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{find_with, BLOCK};
    use std::arch::x86_64::*;

    /// [`super::find`] with 32-byte compares.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn find_avx2<const JSON: bool, const N: usize>(batch: &[u8], places: &mut [u16; N]) -> usize {
        find_with(batch, places, |block| mask_avx2::<JSON>(block))
    }

    /// [`super::find`] with 16-byte compares.
    ///
    /// # Safety
    /// The CPU must have SSE2 (every x86_64 CPU has).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn find_sse2<const JSON: bool, const N: usize>(batch: &[u8], places: &mut [u16; N]) -> usize {
        find_with(batch, places, |block| mask_sse2::<JSON>(block))
    }

    /// [`super::is_ascii`]: the bytes of four 32-byte loads OR-ed, and one
    /// test of their high bits; std's check for the rest.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn is_ascii_avx2(text: &[u8]) -> bool {
        let mut steps = text.chunks_exact(128);
        for step in &mut steps {
            // Four unaligned 32-byte loads, within the 128 bytes of `step`.
            let at = step.as_ptr().cast::<__m256i>();
            let (a, b) = (_mm256_loadu_si256(at), _mm256_loadu_si256(at.add(1)));
            let (c, d) = (_mm256_loadu_si256(at.add(2)), _mm256_loadu_si256(at.add(3)));
            let any = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
            if _mm256_movemask_epi8(any) != 0 {
                return false;
            }
        }
        steps.remainder().is_ascii()
    }

    /// The block's needle mask with 32-byte compares.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn mask_avx2<const JSON: bool>(block: &[u8; BLOCK]) -> u64 {
        let hits = |v: __m256i| {
            if JSON {
                _mm256_or_si256(
                    // v <= 0x1f, unsigned: min(v, 0x1f) is v itself.
                    _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1f)), v),
                    _mm256_or_si256(
                        _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8)),
                        _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8)),
                    ),
                )
            } else {
                _mm256_or_si256(
                    _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\n' as i8)),
                    _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\r' as i8)),
                )
            }
        };
        // Two unaligned 32-byte loads, within the 64 bytes of `block`.
        let at = block.as_ptr().cast::<__m256i>();
        let lo = _mm256_movemask_epi8(hits(_mm256_loadu_si256(at))) as u32 as u64;
        let hi = _mm256_movemask_epi8(hits(_mm256_loadu_si256(at.add(1)))) as u32 as u64;
        lo | hi << 32
    }

    /// The block's needle mask with 16-byte compares.
    ///
    /// # Safety
    /// The CPU must have SSE2 (every x86_64 CPU has).
    #[target_feature(enable = "sse2")]
    #[inline]
    unsafe fn mask_sse2<const JSON: bool>(block: &[u8; BLOCK]) -> u64 {
        let hits = |v: __m128i| {
            if JSON {
                _mm_or_si128(
                    _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v),
                    _mm_or_si128(
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)),
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
                    ),
                )
            } else {
                _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8)),
                )
            }
        };
        let at = block.as_ptr().cast::<__m128i>();
        let mut mask = 0u64;
        for i in 0..BLOCK / 16 {
            // An unaligned 16-byte load from byte 16 * i (i < 4) of `block`.
            let v = _mm_loadu_si128(at.add(i));
            mask |= u64::from(_mm_movemask_epi8(hits(v)) as u16) << (16 * i);
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// The needles of `bytes` by the definition, one byte at a time.
    fn reference(bytes: &[u8], needles: Needles) -> Vec<usize> {
        (0..bytes.len()).filter(|&i| needles.matches(bytes[i])).collect()
    }

    /// Bytes drawn mostly from the needles and their neighbours (0x1f/0x20,
    /// 0x7f/0x80, 0xff), so every compare's edge is crossed often.
    fn random_text(rng: &mut Rng, len: usize) -> Vec<u8> {
        const EDGES: &[u8] = b"\n\r\"\\\x00\x1f \x21\x7f\x80\xff\x0b\x0c\x5c\x5b\x5d\x22\x23\x09\x1b";
        (0..len)
            .map(|_| match rng.below(4) {
                0 => EDGES[rng.below(EDGES.len())],
                1 => rng.next() as u8,
                _ => b'a' + rng.below(26) as u8,
            })
            .collect()
    }

    #[test]
    fn every_level_finds_what_the_definition_finds() {
        // Lengths 0..200 at every alignment within a block, many texts each:
        // every level against the byte-at-a-time definition.
        let mut rng = Rng(0x5ca9);
        let levels = Level::available();
        for len in 0..200 {
            for round in 0..8 {
                let backing = random_text(&mut rng, len + BLOCK);
                let start = (len + round * 7) % BLOCK;
                let text = &backing[start..start + len];
                for needles in [Needles::LineEnds, Needles::JsonEscapes] {
                    let want = reference(text, needles);
                    for &level in &levels {
                        let mut got = Vec::new();
                        each_hit_at(text, needles, level, |i| got.push(i));
                        assert_eq!(
                            got, want,
                            "{level:?} {needles:?}, length {len}, start {start}: {text:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_byte_value_in_every_place_of_a_block() {
        let levels = Level::available();
        for byte in 0..=255u8 {
            for place in 0..BLOCK {
                let mut block = [b'x'; BLOCK];
                block[place] = byte;
                for needles in [Needles::LineEnds, Needles::JsonEscapes] {
                    let want = if needles.matches(byte) { vec![place] } else { vec![] };
                    for &level in &levels {
                        let mut got = Vec::new();
                        each_hit_at(&block, needles, level, |i| got.push(i));
                        assert_eq!(got, want, "{level:?} {needles:?} {byte:#x} at {place}");
                    }
                }
            }
        }
    }

    #[test]
    fn is_ascii_agrees_with_std_wherever_the_high_byte_is() {
        // Lengths through three 128-byte steps and a tail, with one byte at
        // or above 0x80 in each place (or none).
        for len in 0..300 {
            let text = vec![b'~'; len];
            assert!(is_ascii(&text), "length {len}, all ASCII");
            for place in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut text = text.clone();
                    text[place] = high;
                    assert!(!is_ascii(&text), "length {len}, {high:#x} at {place}");
                }
            }
        }
    }

    #[test]
    fn detected_level_is_available() {
        assert!(Level::available().contains(&Level::detected()));
    }
}
