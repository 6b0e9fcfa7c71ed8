//! Percent-decoding of the query string: the `application/x-www-form-urlencoded`
//! `name=value` pairs that browsers, `EventSource` and `curl -G
//! --data-urlencode` put after the `?`.

use std::fmt;

/// Why a query string cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueryError::BadEscape => "bad percent-escape in query",
            QueryError::NotUtf8 => "query is not valid UTF-8 after decoding",
        })
    }
}

impl std::error::Error for QueryError {}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space,
/// `%XX` (hex, either case) a byte; the bytes must be UTF-8.
///
/// `%00` decodes to a NUL character; callers that cannot hold one reject it.
///
/// ```
/// # use ssecommander::http::query::decode;
/// assert_eq!(decode("ls+-l%20%2btmp").unwrap(), "ls -l +tmp");
/// ```
pub fn decode(component: &str) -> Result<String, QueryError> {
    if !component.contains(['%', '+']) {
        return Ok(component.to_owned());
    }
    let mut bytes = Vec::with_capacity(component.len());
    let mut rest = component.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => rest = unescape(rest, &mut bytes)?,
            other => bytes.push(other),
        }
    }
    // The input was UTF-8, so only an escape can have broken it.
    String::from_utf8(bytes).map_err(|_| QueryError::NotUtf8)
}

/// After a `%`: pushes the byte its two hex digits name and returns what
/// follows them.
fn unescape<'a>(rest: &'a [u8], bytes: &mut Vec<u8>) -> Result<&'a [u8], QueryError> {
    let [high, low, tail @ ..] = rest else {
        return Err(QueryError::BadEscape);
    };
    let (Some(high), Some(low)) = (hex_digit(*high), hex_digit(*low)) else {
        return Err(QueryError::BadEscape);
    };
    bytes.push(high << 4 | low);
    Ok(tail)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes `text` so that [`decode`] gives it back: the unreserved
/// characters of RFC 3986 (ASCII letters, digits, `-._~`) are kept, every
/// other byte becomes `%XX` in upper case, a space included (`%20`, never
/// `+`, so the result is also safe in a path). For tests and clients.
///
/// ```
/// # use ssecommander::http::query::encode;
/// assert_eq!(encode("echo a+b é"), "echo%20a%2Bb%20%C3%A9");
/// ```
pub fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    encoded
}

/// The decoded `name=value` pairs of a query string (the part after `?`), in
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `query` (without the `?`); empty pieces (`a=1&&b=2`) are
    /// skipped, a piece without `=` has an empty value. Names and values are
    /// both decoded with [`decode`]; fails on the first bad escape or
    /// non-UTF-8 name or value.
    ///
    /// ```
    /// # use ssecommander::http::query::Query;
    /// let query = Query::parse("command=ls+-l&&format=raw&verbose").unwrap();
    /// assert_eq!(query.get("command"), Some("ls -l"));
    /// assert_eq!(query.get("verbose"), Some(""));
    /// assert_eq!(query.get("token"), None);
    /// ```
    pub fn parse(query: &str) -> Result<Query, QueryError> {
        let pairs = query
            .split('&')
            .filter(|piece| !piece.is_empty())
            .map(decode_pair)
            .collect::<Result<_, _>>()?;
        Ok(Query { pairs })
    }

    /// The first value given for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

fn decode_pair(piece: &str) -> Result<(String, String), QueryError> {
    let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
    Ok((decode(name)?, decode(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_plain_text_is_unchanged() {
        assert_eq!(decode(""), Ok(String::new()));
        assert_eq!(decode("abc-._~"), Ok("abc-._~".to_owned()));
        assert_eq!(decode("é日本🦀"), Ok("é日本🦀".to_owned()));
        assert_eq!(decode("a=b"), Ok("a=b".to_owned()));
    }

    #[test]
    fn decode_plus_and_escapes() {
        assert_eq!(decode("a+b"), Ok("a b".to_owned()));
        assert_eq!(decode("a%2Bb"), Ok("a+b".to_owned()));
        assert_eq!(decode("a%2bb"), Ok("a+b".to_owned()));
        assert_eq!(decode("%20%20+"), Ok("   ".to_owned()));
        assert_eq!(decode("%25"), Ok("%".to_owned()));
        assert_eq!(decode("%2525"), Ok("%25".to_owned()));
        assert_eq!(decode("%41%6a"), Ok("Aj".to_owned()));
        assert_eq!(decode("%C3%A9"), Ok("é".to_owned()));
        assert_eq!(decode("%c3%a9t%C3%A9"), Ok("été".to_owned()));
        assert_eq!(decode("%F0%9F%A6%80"), Ok("🦀".to_owned()));
        assert_eq!(decode("%26%3D%3F%23"), Ok("&=?#".to_owned()));
    }

    #[test]
    fn decode_nul_is_allowed_here() {
        assert_eq!(decode("a%00b"), Ok("a\0b".to_owned()));
    }

    #[test]
    fn decode_bad_escapes() {
        for bad in [
            "%", "%4", "%zz", "%4g", "%g4", "a%", "a%2", "%%41", "%+1", "%-1", "%é1", "%1é",
        ] {
            assert_eq!(decode(bad), Err(QueryError::BadEscape), "{bad:?}");
        }
    }

    #[test]
    fn decode_not_utf8() {
        for bad in ["%FF", "%ff", "%C3", "%C3%28", "a%80", "%ED%A0%80", "%F0%9F%A6"] {
            assert_eq!(decode(bad), Err(QueryError::NotUtf8), "{bad:?}");
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(QueryError::BadEscape.to_string(), "bad percent-escape in query");
        assert_eq!(
            QueryError::NotUtf8.to_string(),
            "query is not valid UTF-8 after decoding"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(QueryError::BadEscape);
        assert!(!boxed.to_string().is_empty());
    }

    #[test]
    fn encode_examples() {
        assert_eq!(encode(""), "");
        assert_eq!(encode("Az09-._~"), "Az09-._~");
        assert_eq!(encode("a b"), "a%20b");
        assert_eq!(encode("a+b"), "a%2Bb");
        assert_eq!(encode("%&=?#/"), "%25%26%3D%3F%23%2F");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("\0\n"), "%00%0A");
    }

    fn pairs(query: &Query) -> Vec<(&str, &str)> {
        query.pairs().collect()
    }

    #[test]
    fn parse_pairs_in_order() {
        let query = Query::parse("command=ls+-l&format=raw&token=abc").unwrap_or_default();
        assert_eq!(
            pairs(&query),
            [("command", "ls -l"), ("format", "raw"), ("token", "abc")]
        );
        assert_eq!(query.get("format"), Some("raw"));
        assert_eq!(query.get("missing"), None);
    }

    #[test]
    fn parse_edge_pieces() {
        assert_eq!(Query::parse(""), Ok(Query::default()));
        assert_eq!(Query::parse("&&&"), Ok(Query::default()));
        let query = Query::parse("a=1&&b=2&").unwrap_or_default();
        assert_eq!(pairs(&query), [("a", "1"), ("b", "2")]);
        let query = Query::parse("flag&x=").unwrap_or_default();
        assert_eq!(pairs(&query), [("flag", ""), ("x", "")]);
        let query = Query::parse("=v&a=b=c").unwrap_or_default();
        assert_eq!(pairs(&query), [("", "v"), ("a", "b=c")]);
        assert_eq!(query.get(""), Some("v"));
    }

    #[test]
    fn parse_first_value_wins() {
        let query = Query::parse("a=1&a=2").unwrap_or_default();
        assert_eq!(query.get("a"), Some("1"));
        assert_eq!(pairs(&query), [("a", "1"), ("a", "2")]);
    }

    #[test]
    fn parse_decodes_names_and_escaped_separators() {
        let query = Query::parse("com%6Dand=a%26b%3Dc&my+name=x").unwrap_or_default();
        assert_eq!(query.get("command"), Some("a&b=c"));
        assert_eq!(query.get("my name"), Some("x"));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Query::parse("a=1&b=%zz"), Err(QueryError::BadEscape));
        assert_eq!(Query::parse("%zz=1"), Err(QueryError::BadEscape));
        assert_eq!(Query::parse("a=%FF"), Err(QueryError::NotUtf8));
        assert_eq!(Query::parse("%FF"), Err(QueryError::NotUtf8));
        // The first failure is the one reported.
        assert_eq!(Query::parse("a=%FF&b=%"), Err(QueryError::NotUtf8));
    }

    use crate::test_rng::Rng;

    const CHARS: &[char] = &[
        'a',
        'Z',
        '0',
        '9',
        ' ',
        '+',
        '%',
        '&',
        '=',
        '?',
        '#',
        '/',
        '-',
        '.',
        '_',
        '~',
        '\0',
        '\n',
        '\'',
        '"',
        '\\',
        'é',
        '日',
        '🦀',
        '\u{7f}',
        '\u{ffff}',
        '\u{10ffff}',
    ];

    fn text(rng: &mut Rng) -> String {
        (0..rng.below(16)).map(|_| CHARS[rng.below(CHARS.len())]).collect()
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let original = text(&mut rng);
            assert_eq!(decode(&encode(&original)), Ok(original.clone()), "{original:?}");
        }
    }

    #[test]
    fn encoded_pairs_parse_back() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for _ in 0..1000 {
            let expected: Vec<(String, String)> = (0..rng.below(5))
                .map(|_| (format!("k{}", text(&mut rng)), text(&mut rng)))
                .collect();
            let line: Vec<String> = expected
                .iter()
                .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
                .collect();
            let query = Query::parse(&line.join("&"));
            assert_eq!(query, Ok(Query { pairs: expected }));
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for _ in 0..5000 {
            let line: String = (0..rng.below(12))
                .map(|_| ["%", "%4", "1", "f", "F", "g", "+", "&", "=", "é", "%C3"][rng.below(11)])
                .collect();
            let _ = Query::parse(&line);
        }
    }
}
