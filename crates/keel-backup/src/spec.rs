//! A repository as an operator describes it: target texts, a layout text
//! and where the key is. `keel backup` reads it from flags, a gateway from
//! the `[backup]` section of its configuration.

use std::path::PathBuf;

use crate::{BackupError, Key, Layout, LayoutParseError, Repository, Target};

/// Environment variable that may hold the key as 64 hex digits, read when
/// no key file is given.
pub const KEY_ENV: &str = "KEEL_BACKUP_KEY";

/// Where backups live and how they are sealed, as text.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    /// Directories (`dir:/path` or a path) or S3 buckets (`s3://…`).
    pub targets: Vec<String>,
    /// `mirror` or `K+M`.
    pub layout: String,
    /// File holding the 32-byte key (raw or 64 hex digits); [`KEY_ENV`]
    /// when absent.
    pub key_file: Option<PathBuf>,
}

/// Why a described repository could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A target's text is not a directory or an S3 bucket.
    #[error("backup target {spec:?}")]
    Target {
        /// The target's text.
        spec: String,
        /// Why it was refused.
        #[source]
        source: BackupError,
    },
    /// The layout's text makes no layout.
    #[error(transparent)]
    Layout(#[from] LayoutParseError),
    /// No key file was given and [`KEY_ENV`] holds no key.
    #[error("no key: give --key-file or set {KEY_ENV} to 64 hex digits")]
    NoKey(#[source] BackupError),
    /// The key file, or the targets with the layout, were refused.
    #[error(transparent)]
    Repository(#[from] BackupError),
}

impl RepoSpec {
    /// Opens the repository the text describes (no I/O on the targets).
    pub fn open(&self) -> Result<Repository, OpenError> {
        let targets = self
            .targets
            .iter()
            .map(|t| {
                Target::parse(t).map_err(|source| OpenError::Target {
                    spec: t.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let layout: Layout = self.layout.parse()?;
        let key = match &self.key_file {
            Some(p) => Key::from_file(p)?,
            None => Key::from_env(KEY_ENV).map_err(OpenError::NoKey)?,
        };
        Ok(Repository::open(targets, layout, key)?)
    }
}
