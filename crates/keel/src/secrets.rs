//! Secrets reach a process from a file or an environment variable, never
//! from its command line (which every user of the host can read).

use std::path::Path;

use anyhow::{bail, Context};

/// Largest secret file read: a token is tens of bytes.
pub const SECRET_FILE_BYTES_MAX: u64 = 4 << 10;

/// The secret in `file` (its first line, without the line end), else in
/// the environment variable `var`, else none.
pub fn read(file: Option<&Path>, var: &str) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let len = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        if len > SECRET_FILE_BYTES_MAX {
            bail!(
                "{}: {len} bytes, more than a secret ({SECRET_FILE_BYTES_MAX} at most)",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            bail!("{} is empty", path.display());
        }
        return Ok(Some(line.to_owned()));
    }
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => bail!("{var}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_gives_its_first_line_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret-token\n").unwrap();
        assert_eq!(
            read(Some(&f), "KEEL_TEST_UNSET").unwrap().as_deref(),
            Some("s3cret-token")
        );
        std::fs::write(&f, "\n").unwrap();
        assert!(read(Some(&f), "KEEL_TEST_UNSET").is_err());
        std::fs::write(&f, vec![b'a'; 8 << 10]).unwrap();
        assert!(read(Some(&f), "KEEL_TEST_UNSET").is_err());
        assert!(read(None, "KEEL_TEST_SURELY_UNSET_VARIABLE")
            .unwrap()
            .is_none());
    }
}
