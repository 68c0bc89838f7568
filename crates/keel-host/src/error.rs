//! The errors of reading and parsing what the kernel reports.

use std::path::PathBuf;

/// Why a text from `/proc` could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field the format always has was not there (truncated or foreign text).
    #[error("field {0} is missing")]
    Missing(&'static str),
    /// A field was there but is not a number of the expected kind.
    #[error("field {field} is not a number: {text:?}")]
    NotANumber {
        /// Which field.
        field: &'static str,
        /// What stood there, cut to a few characters.
        text: String,
    },
}

/// Why a sampler could not read one of its sources.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file or directory could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path read.
        path: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// The file was longer than any sane version of it (see the caps in `read`).
    #[error("{path} is longer than {cap_bytes} bytes")]
    TooLong {
        /// The path read.
        path: PathBuf,
        /// The cap it exceeded.
        cap_bytes: u64,
    },
    /// The file was read but its text was not understood.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The path read.
        path: PathBuf,
        /// What was wrong with the text.
        source: ParseError,
    },
}

/// Most characters of a bad field kept in a [`ParseError`]: enough to
/// recognise it in a log line, never a whole hostile line.
const BAD_TEXT_CHARS_MAX: usize = 32;

/// Parses `text` as a number, naming `field` in the error.
pub(crate) fn number<T: std::str::FromStr>(
    field: &'static str,
    text: &str,
) -> Result<T, ParseError> {
    text.parse().map_err(|_| not_a_number(field, text))
}

/// A [`ParseError::NotANumber`] for `field`, keeping the start of `text`.
pub(crate) fn not_a_number(field: &'static str, text: &str) -> ParseError {
    ParseError::NotANumber {
        field,
        text: text.chars().take(BAD_TEXT_CHARS_MAX).collect(),
    }
}

/// The `n`th whitespace-separated field of `fields`, or a [`ParseError::Missing`] naming it.
pub(crate) fn nth<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    n: usize,
    name: &'static str,
) -> Result<&'a str, ParseError> {
    fields.nth(n).ok_or(ParseError::Missing(name))
}
