//! How a Keel process reads a secret (an admin token, the cluster secret):
//! from a file, or from an environment variable, never from its command
//! line, which every user of the host can read in `/proc`.
//!
//! A secret file holds the secret on its first line; the line end is not
//! part of it. A file larger than [`SECRET_FILE_BYTES_MAX`] is refused as
//! not a secret (a wrong path, say), and so is an empty one. Errors name the
//! file, never its content.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

/// Largest secret file read: a token is tens of bytes.
pub const SECRET_FILE_BYTES_MAX: u64 = 4 << 10;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than a secret.
    #[error("{path}: {len} bytes, more than a secret ({SECRET_FILE_BYTES_MAX} at most)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The file's first line is empty.
    #[error("{0} holds no secret (its first line is empty)")]
    Empty(PathBuf),
    /// The environment variable is not valid Unicode.
    #[error("{0} is not valid Unicode")]
    NotUnicode(String),
}

/// The secret in the file at `path`: its first line, without the line end.
pub fn from_file(path: &Path) -> Result<String, SecretError> {
    let read = |source| SecretError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > SECRET_FILE_BYTES_MAX {
        return Err(SecretError::TooLarge {
            path: path.to_owned(),
            len,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(SecretError::Empty(path.to_owned()));
    }
    Ok(line.to_owned())
}

/// The secret in `file` if given, else in the environment variable `var`
/// if set and not empty, else none.
pub fn read(file: Option<&Path>, var: &str) -> Result<Option<String>, SecretError> {
    if let Some(path) = file {
        return from_file(path).map(Some);
    }
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::NotUnicode(var.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_gives_its_first_line_and_odd_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret-token\r\nignored\n").unwrap();
        assert_eq!(
            read(Some(&f), "KEEL_TEST_UNSET").unwrap().as_deref(),
            Some("s3cret-token")
        );
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(from_file(&f), Err(SecretError::Empty(_))));
        std::fs::write(&f, vec![b'a'; 8 << 10]).unwrap();
        assert!(matches!(from_file(&f), Err(SecretError::TooLarge { .. })));
        let e = from_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        assert!(read(None, "KEEL_TEST_SURELY_UNSET_VARIABLE")
            .unwrap()
            .is_none());
    }
}
