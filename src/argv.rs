//! Splits a command line into argv the way a POSIX shell splits words, with
//! quoting only: no parameter, command, tilde or glob expansion, and no
//! operators, redirections or comments.
//!
//! The words are executed directly, not by a shell, so `$HOME`, `*`, `~`, `|`,
//! `;`, `>`, `&&` and `#` reach the program exactly as written. Quotes and
//! backslashes behave as in `sh`, so a line copied from a terminal still
//! splits where the user expects.

use std::fmt;
use std::str::Chars;

/// Why a command line cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgvError {
    /// A `'` is never closed.
    UnbalancedSingle,
    /// A `"` is never closed.
    UnbalancedDouble,
    /// The line ends with an unquoted backslash that has nothing to escape.
    TrailingBackslash,
    /// The line holds no words (it is empty or only blanks), or, as a
    /// command, its first word is empty (`''`).
    Empty,
    /// The line contains a NUL character, which no argv entry can hold.
    Nul,
}

impl fmt::Display for ArgvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArgvError::UnbalancedSingle => "unbalanced single quote in command",
            ArgvError::UnbalancedDouble => "unbalanced double quote in command",
            ArgvError::TrailingBackslash => "command ends with a lone backslash",
            ArgvError::Empty => "empty command",
            ArgvError::Nul => "command contains a NUL byte",
        })
    }
}

impl std::error::Error for ArgvError {}

/// Splits `line` into argv the way a POSIX shell splits words, honouring
/// quotes and backslashes but expanding nothing.
///
/// Words are separated by unquoted blanks (space, tab, newline, CR, VT, FF).
/// Inside `'…'` everything is literal. Inside `"…"` a backslash escapes only
/// `"`, `\`, `$` and `` ` `` and otherwise stays literal. An unquoted
/// backslash escapes the next character. A backslash-newline, quoted by `"`
/// or not, is a line continuation and vanishes. `''` and `""` make an empty
/// word.
///
/// ```
/// # use ssecommander::argv::split;
/// assert_eq!(split(r#"echo 'a b' "c\"d" $HOME|x"#).unwrap(), ["echo", "a b", "c\"d", "$HOME|x"]);
/// ```
pub fn split(line: &str) -> Result<Vec<String>, ArgvError> {
    if line.contains('\0') {
        return Err(ArgvError::Nul);
    }
    let mut chars = line.chars();
    let mut words = Vec::new();
    while let Some(word) = next_word(&mut chars)? {
        words.push(word);
    }
    if words.is_empty() {
        return Err(ArgvError::Empty);
    }
    Ok(words)
}

/// Splits `line` as [`split`] does, for running: an empty first word (`''`,
/// `"" x`) names no program, so it is [`ArgvError::Empty`] like an empty
/// line (contract §2), rather than a spawn that must fail.
///
/// ```
/// # use ssecommander::argv::{command, ArgvError};
/// assert_eq!(command("''"), Err(ArgvError::Empty));
/// assert_eq!(command("echo ''").unwrap(), ["echo", ""]);
/// ```
pub fn command(line: &str) -> Result<Vec<String>, ArgvError> {
    let words = split(line)?;
    if words.first().is_none_or(String::is_empty) {
        return Err(ArgvError::Empty);
    }
    Ok(words)
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// The next word, or `None` once only blanks are left.
fn next_word(chars: &mut Chars<'_>) -> Result<Option<String>, ArgvError> {
    let mut word = String::new();
    // A quoted empty string is still a word, so emptiness cannot tell us
    // whether one has begun.
    let mut started = false;
    while let Some(c) = chars.next() {
        match c {
            c if is_blank(c) => {
                if started {
                    break;
                }
            }
            '\'' => {
                single_quoted(chars, &mut word)?;
                started = true;
            }
            '"' => {
                double_quoted(chars, &mut word)?;
                started = true;
            }
            '\\' => started |= unquoted_escape(chars, &mut word)?,
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    Ok(started.then_some(word))
}

/// After an unquoted backslash: pushes the escaped character and returns
/// true, or returns false for a line continuation, which must not start a word.
fn unquoted_escape(chars: &mut Chars<'_>, word: &mut String) -> Result<bool, ArgvError> {
    match chars.next() {
        None => Err(ArgvError::TrailingBackslash),
        Some('\n') => Ok(false),
        Some(c) => {
            word.push(c);
            Ok(true)
        }
    }
}

/// After an opening `'`: copies up to the closing one.
fn single_quoted(chars: &mut Chars<'_>, word: &mut String) -> Result<(), ArgvError> {
    let rest = chars.as_str();
    let (inside, after) = rest.split_once('\'').ok_or(ArgvError::UnbalancedSingle)?;
    word.push_str(inside);
    *chars = after.chars();
    Ok(())
}

/// After an opening `"`: copies up to the closing one, resolving escapes.
fn double_quoted(chars: &mut Chars<'_>, word: &mut String) -> Result<(), ArgvError> {
    loop {
        match chars.next().ok_or(ArgvError::UnbalancedDouble)? {
            '"' => return Ok(()),
            '\\' => double_quoted_escape(chars, word)?,
            c => word.push(c),
        }
    }
}

/// After a backslash inside `"…"`, where POSIX lets it escape only the
/// characters that are special there.
fn double_quoted_escape(chars: &mut Chars<'_>, word: &mut String) -> Result<(), ArgvError> {
    match chars.next().ok_or(ArgvError::UnbalancedDouble)? {
        '\n' => {}
        c @ ('"' | '\\' | '$' | '`') => word.push(c),
        c => {
            word.push('\\');
            word.push(c);
        }
    }
    Ok(())
}

/// Quotes `word` so that [`split`] gives it back unchanged, as one word.
///
/// A non-empty word made only of characters no shell treats specially
/// (ASCII letters, digits and `-_./=:,+@%`) is returned as it is, so joined
/// command lines stay readable; anything else is single-quoted, with each `'`
/// written as `'\''`. The empty string becomes `''`. The result means the same
/// to a real `sh`.
pub fn quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(is_plain) {
        return word.to_owned();
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    quoted.push_str(&word.replace('\'', r"'\''"));
    quoted.push('\'');
    quoted
}

fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)
}

/// Quotes every word with [`quote`] and joins them with single spaces, so
/// that [`split`] gives back `words` (for any non-empty list of words without
/// NUL). Takes `&[&str]`, `&[String]` or anything else whose items are
/// `AsRef<str>`.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    let quoted: Vec<String> = words.iter().map(|word| quote(word.as_ref())).collect();
    quoted.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Vec<String> {
        match split(line) {
            Ok(words) => words,
            Err(err) => panic!("{line:?} failed: {err}"),
        }
    }

    fn check(line: &str, expected: &[&str]) {
        assert_eq!(ok(line), expected, "splitting {line:?}");
    }

    #[test]
    fn plain_words_and_blanks() {
        check("echo hi", &["echo", "hi"]);
        check("  echo   hi  ", &["echo", "hi"]);
        check("a\tb\nc\rd\x0be\x0cf", &["a", "b", "c", "d", "e", "f"]);
        check("one", &["one"]);
        check("é ünï 日本", &["é", "ünï", "日本"]);
    }

    #[test]
    fn nothing_is_expanded() {
        check("echo $HOME|x", &["echo", "$HOME|x"]);
        check("ls * ~ a;b > f && g", &["ls", "*", "~", "a;b", ">", "f", "&&", "g"]);
        check("echo # not a comment", &["echo", "#", "not", "a", "comment"]);
        check("a#b $(x) `y` ${z}", &["a#b", "$(x)", "`y`", "${z}"]);
        check("x=1 cmd", &["x=1", "cmd"]);
    }

    #[test]
    fn single_quotes_are_literal() {
        check("'a b'", &["a b"]);
        check(r"'a\b'", &[r"a\b"]);
        check(r#"'say "hi"'"#, &[r#"say "hi""#]);
        check("'$HOME'", &["$HOME"]);
        check("'line\nbreak'", &["line\nbreak"]);
        check(r"'a\'", &[r"a\"]);
    }

    #[test]
    fn double_quotes_escape_only_their_specials() {
        check(r#""a b""#, &["a b"]);
        check(r#""a\"b""#, &[r#"a"b"#]);
        check(r#""a\\b""#, &[r"a\b"]);
        check(r#""\$x""#, &["$x"]);
        check(r#""\`x""#, &["`x"]);
        check(r#""a\b""#, &[r"a\b"]);
        check(r#""a\nb""#, &[r"a\nb"]);
        check(r#""a\'b""#, &[r"a\'b"]);
        check(r#""it's""#, &["it's"]);
        check("\"a\\\nb\"", &["ab"]);
    }

    #[test]
    fn unquoted_backslash_escapes_the_next_char() {
        check(r"a\ b", &["a b"]);
        check(r"\'x", &["'x"]);
        check(r#"\"x"#, &["\"x"]);
        check(r"a\\b", &[r"a\b"]);
        check(r"\n", &["n"]);
        check("a\\\tb", &["a\tb"]);
        check(r"\$HOME", &["$HOME"]);
    }

    #[test]
    fn backslash_newline_is_a_continuation() {
        check("a\\\nb", &["ab"]);
        check("a \\\n b", &["a", "b"]);
        check("echo hi\\\n", &["echo", "hi"]);
        assert_eq!(split("\\\n"), Err(ArgvError::Empty));
    }

    #[test]
    fn quotes_join_adjacent_text_into_one_word() {
        check(r#"a'b'"c"d"#, &["abcd"]);
        check(r#"--opt="x y""#, &["--opt=x y"]);
        check(r#"'it'\''s'"#, &["it's"]);
    }

    #[test]
    fn empty_quotes_make_empty_words() {
        check("a '' b", &["a", "", "b"]);
        check(r#"a "" b"#, &["a", "", "b"]);
        check("''", &[""]);
        check(r#"'' """#, &["", ""]);
        check(r#"''""x"#, &["x"]);
    }

    #[test]
    fn a_command_needs_a_program_name() {
        assert_eq!(command("''"), Err(ArgvError::Empty));
        assert_eq!(command(r#""" x"#), Err(ArgvError::Empty));
        assert_eq!(command("  ''  "), Err(ArgvError::Empty));
        assert_eq!(command(""), Err(ArgvError::Empty));
        assert_eq!(command("'"), Err(ArgvError::UnbalancedSingle));
        assert_eq!(command("x ''"), Ok(vec!["x".to_owned(), String::new()]));
    }

    #[test]
    fn errors() {
        assert_eq!(split(""), Err(ArgvError::Empty));
        assert_eq!(split(" \t\n\r "), Err(ArgvError::Empty));
        assert_eq!(split("echo 'hi"), Err(ArgvError::UnbalancedSingle));
        assert_eq!(split("'"), Err(ArgvError::UnbalancedSingle));
        assert_eq!(split(r#"echo "hi"#), Err(ArgvError::UnbalancedDouble));
        assert_eq!(split(r#"echo "hi\""#), Err(ArgvError::UnbalancedDouble));
        assert_eq!(split(r#""\"#), Err(ArgvError::UnbalancedDouble));
        assert_eq!(split("echo \\"), Err(ArgvError::TrailingBackslash));
        assert_eq!(split("\\"), Err(ArgvError::TrailingBackslash));
        assert_eq!(split(r"a\\"), Ok(vec![r"a\".to_owned()]));
        assert_eq!(split("a\0b"), Err(ArgvError::Nul));
        assert_eq!(split("'\0'"), Err(ArgvError::Nul));
        assert_eq!(split("'unbalanced \0"), Err(ArgvError::Nul));
        assert_eq!(split("\0"), Err(ArgvError::Nul));
    }

    #[test]
    fn error_messages() {
        let all = [
            ArgvError::UnbalancedSingle,
            ArgvError::UnbalancedDouble,
            ArgvError::TrailingBackslash,
            ArgvError::Empty,
            ArgvError::Nul,
        ];
        for err in all {
            let text = err.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{err:?}");
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{err:?}");
        }
        assert_eq!(ArgvError::Empty.to_string(), "empty command");
        let boxed: Box<dyn std::error::Error> = Box::new(ArgvError::Nul);
        assert_eq!(boxed.to_string(), "command contains a NUL byte");
    }

    #[test]
    fn quote_examples() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("plain-word_1.txt"), "plain-word_1.txt");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("#"), "'#'");
        assert_eq!(quote("~"), "'~'");
        assert_eq!(join(&["echo", "a b", ""]), "echo 'a b' ''");
        assert_eq!(join(&[String::from("x")]), "x");
        assert_eq!(join::<&str>(&[]), "");
    }

    use crate::test_rng::Rng;

    fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
        items[rng.below(items.len())]
    }

    const PIECES: &[&str] = &[
        "a", "Z", "0", "-", " ", "  ", "\t", "\n", "\r", "'", "''", "\"", "\\", "\\\n", "$", "$HOME", "*", "~", "#",
        "|", ";", "&&", ">", "`", "=", "é", "日本", "🦀", "\u{a0}", "x y", "'\\''",
    ];

    fn word(rng: &mut Rng) -> String {
        (0..rng.below(6)).map(|_| pick(rng, PIECES)).collect()
    }

    #[test]
    fn join_then_split_round_trips() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let argv: Vec<String> = (0..1 + rng.below(5)).map(|_| word(&mut rng)).collect();
            let line = join(&argv);
            assert_eq!(split(&line).as_ref(), Ok(&argv), "line {line:?}");
        }
    }

    #[test]
    fn arbitrary_lines_never_panic_and_resplit_stably() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for _ in 0..5000 {
            let line: String = (0..rng.below(12)).map(|_| pick(&mut rng, PIECES)).collect();
            if let Ok(words) = split(&line) {
                assert_eq!(split(&join(&words)), Ok(words), "line {line:?}");
            }
        }
    }
}
