//! Temporary stub; replaced by the real splitter.
#![allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgvError { UnbalancedSingle, UnbalancedDouble, TrailingBackslash, Empty, Nul }
impl std::fmt::Display for ArgvError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
pub fn split(line: &str) -> Result<Vec<String>, ArgvError> {
    if line.contains('\0') { return Err(ArgvError::Nul); }
    let v: Vec<String> = line.split_whitespace().map(String::from).collect();
    if v.is_empty() { Err(ArgvError::Empty) } else { Ok(v) }
}
