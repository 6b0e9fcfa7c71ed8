//! The built-in page (`GET /`) and its Content-Security-Policy, whose
//! SHA-256 hashes of the page's inline blocks are computed here.

use super::{with_headers, Decision};
use crate::http::response::Reply;

/// The built-in web page.
pub const PAGE: &str = include_str!("../page.html");

/// The page, with or without `?token=` and whatever its value: it holds no
/// secret. Its script takes the token from its own address, keeps it in the
/// tab's `sessionStorage` and sends it itself (contract §4, v3).
pub(super) fn page(cors: Vec<(&'static str, String)>) -> Decision {
    let mut reply = Reply::text(200, "OK", "");
    reply.body = PAGE.as_bytes().to_vec();
    reply.content_type = Some("text/html; charset=utf-8");
    let reply = reply
        .header("Cache-Control", "no-store")
        .header("X-Content-Type-Options", "nosniff")
        .header("X-Frame-Options", "DENY")
        .header("Referrer-Policy", "no-referrer")
        .header("Content-Security-Policy", page_csp());
    Decision::Reply(with_headers(reply, cors))
}

/// The page's Content-Security-Policy: its one inline script and its one
/// inline style block are allowed by their SHA-256 hashes, nothing else. The
/// page keeps the token in `sessionStorage`, which any script it ran could
/// read; so no injected markup may run script, not even inline.
fn page_csp() -> String {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            csp_hash(inline_block(PAGE, "script")),
            csp_hash(inline_block(PAGE, "style")),
        )
    })
    .clone()
}

/// The text between `<tag>` and `</tag>`, as the browser hashes it.
fn inline_block<'a>(page: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = page.find(&open).map_or(0, |i| i + open.len());
    let end = page[start..]
        .find(&format!("</{tag}>"))
        .map_or(page.len(), |i| start + i);
    &page[start..end]
}

/// A CSP hash source: `sha256-` and the digest in standard base64.
fn csp_hash(text: &str) -> String {
    format!("sha256-{}", digest::base64(&digest::sha256(text.as_bytes())))
}

/// SHA-256 (FIPS 180-4) and standard base64, only for the page's CSP hashes:
/// the runtime dependencies do not include a hash crate.
mod digest {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> [u8; 32] {
        let mut h: [u32; 8] = [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
        ];
        let mut message = bytes.to_vec();
        message.push(0x80);
        while message.len() % 64 != 56 {
            message.push(0);
        }
        message.extend_from_slice(&((bytes.len() as u64) * 8).to_be_bytes());
        for block in message.chunks_exact(64) {
            compress(&mut h, block);
        }
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(h: &mut [u32; 8], block: &[u8]) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (slot, value) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *slot = slot.wrapping_add(value);
        }
    }

    /// Standard base64 with padding, as CSP hash sources are written.
    pub fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for group in bytes.chunks(3) {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= group.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_base64_known_values() {
        assert_eq!(
            digest::base64(&digest::sha256(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            digest::base64(&digest::sha256(b"abc")),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        let long = [b'a'; 1000];
        assert_eq!(
            digest::base64(&digest::sha256(&long)),
            "Qe3s5C1j6Nm/UVqbppMuHCDLyfWl0TRkWttdsblzfqM="
        );
        assert_eq!(digest::base64(b"fo"), "Zm8=");
        assert_eq!(digest::base64(b"f"), "Zg==");
    }

    #[test]
    fn page_csp_allows_only_its_own_inline_blocks() {
        let csp = page_csp();
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let script = inline_block(PAGE, "script");
        assert!(
            script.contains("sessionStorage") && !script.contains("</script"),
            "{script:.80}"
        );
        assert!(csp.contains(&format!("script-src '{}'", csp_hash(script))), "{csp}");
    }
}
