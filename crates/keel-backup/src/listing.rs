//! Backups as an operator reads them: one line per manifest.

use std::fmt;

use crate::{BackupId, Manifest};

/// One manifest as a line: id, kind, index range, content size, parent.
pub struct ManifestLine<'a>(pub &'a Manifest);

impl fmt::Display for ManifestLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:<44} {:<12} {:>10}..{:<10} {:>12} bytes  parent {}",
            m.id.as_str(),
            m.kind.as_str(),
            m.first_index,
            m.last_index,
            m.content_bytes,
            m.parent.as_ref().map_or("-", BackupId::as_str)
        )
    }
}

/// A list of manifests, one line each, then their count.
pub struct Listing<'a>(pub &'a [Manifest]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in self.0 {
            writeln!(f, "{}", ManifestLine(m))?;
        }
        write!(f, "{} backups", self.0.len())
    }
}
