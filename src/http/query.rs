//! Temporary stub; replaced by the real decoder.
#![allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError { BadEscape, NotUtf8 }
impl std::fmt::Display for QueryError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
pub fn decode(c: &str) -> Result<String, QueryError> {
    let b = c.as_bytes(); let mut out = Vec::new(); let mut i = 0;
    while i < b.len() { match b[i] { b'+' => out.push(b' '), b'%' => { let h = c.get(i+1..i+3).ok_or(QueryError::BadEscape)?; out.push(u8::from_str_radix(h, 16).map_err(|_| QueryError::BadEscape)?); i += 2; } x => out.push(x) } i += 1; }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
}
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query { pairs: Vec<(String, String)> }
impl Query {
    pub fn parse(q: &str) -> Result<Query, QueryError> {
        let mut pairs = Vec::new();
        for p in q.split('&').filter(|p| !p.is_empty()) { let (n, v) = p.split_once('=').unwrap_or((p, "")); pairs.push((decode(n)?, decode(v)?)); }
        Ok(Query { pairs })
    }
    pub fn get(&self, name: &str) -> Option<&str> { self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()) }
}
