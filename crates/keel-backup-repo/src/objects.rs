//! Object names on a target and the catalog built from listing them: which
//! objects are manifests, pieces, temp files or strangers, and which
//! backups authenticate.
//!
//! Objects on every target are named `<backup id>/manifest.json` and
//! `<backup id>/cNNNNNNNN.sNN` (chunk, shard).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::layout::Layout;
use crate::manifest::{BackupId, Manifest};
use crate::target::{ObjectEntry, TEMP_PREFIX};

/// File name of a backup's manifest inside its id directory.
pub const MANIFEST_OBJECT: &str = "manifest.json";

/// Name of the manifest object of `id`.
pub(crate) fn manifest_name(id: &BackupId) -> String {
    format!("{id}/{MANIFEST_OBJECT}")
}

/// Name of shard `shard` of chunk `chunk` of `id`.
pub(crate) fn piece_name(id: &BackupId, chunk: u64, shard: usize) -> String {
    format!("{id}/c{chunk:08}.s{shard:02}")
}

/// What a listed object name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    Manifest(BackupId),
    Piece(BackupId),
    /// A directory target's temp file, with the backup it belongs to.
    Temp(Option<BackupId>),
    /// Not a name this crate writes.
    Unknown,
}

pub(crate) fn classify(name: &str) -> ObjectKind {
    let Some((dir, file)) = name.split_once('/') else {
        return if name.starts_with(TEMP_PREFIX) {
            ObjectKind::Temp(None)
        } else {
            ObjectKind::Unknown
        };
    };
    let Ok(id) = BackupId::parse(dir) else {
        return ObjectKind::Unknown;
    };
    let is_piece = file.len() == 13
        && file.bytes().enumerate().all(|(i, b)| match i {
            0 => b == b'c',
            9 => b == b'.',
            10 => b == b's',
            _ => b.is_ascii_digit(),
        });
    if file == MANIFEST_OBJECT {
        ObjectKind::Manifest(id)
    } else if is_piece {
        ObjectKind::Piece(id)
    } else if file.starts_with(TEMP_PREFIX) {
        ObjectKind::Temp(Some(id))
    } else {
        ObjectKind::Unknown
    }
}

/// Every target's listing and every backup's authenticated manifest.
pub(crate) struct Catalog {
    /// Per target: its objects, or why it could not be listed.
    pub listings: Vec<Result<Vec<ObjectEntry>, String>>,
    /// Authenticated manifests and the exact bytes of one good copy.
    pub manifests: BTreeMap<BackupId, (Manifest, Bytes)>,
    /// Ids with manifest objects none of which could be authenticated.
    pub unauthenticated: BTreeSet<BackupId>,
}

impl Catalog {
    /// Ids that have any object (of any kind) on any target.
    fn ids_with_manifest_objects(&self) -> BTreeSet<BackupId> {
        self.listings
            .iter()
            .flatten()
            .flatten()
            .filter_map(|e| match classify(&e.name) {
                ObjectKind::Manifest(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// Objects on target `t` that no manifest explains: temp files, pieces
    /// of ids without any manifest object, and extra objects under a known
    /// id. Objects of unauthenticated ids are never garbage.
    pub fn garbage_and_unknown(
        &self,
        t: usize,
        layout_targets: usize,
    ) -> (Vec<String>, Vec<String>) {
        let (mut garbage, mut unknown) = (Vec::new(), Vec::new());
        let Some(Ok(entries)) = self.listings.get(t) else {
            return (garbage, unknown);
        };
        let with_manifest = self.ids_with_manifest_objects();
        for e in entries {
            let id = match classify(&e.name) {
                ObjectKind::Unknown => {
                    unknown.push(e.name.clone());
                    continue;
                }
                ObjectKind::Temp(_) => {
                    garbage.push(e.name.clone());
                    continue;
                }
                ObjectKind::Manifest(id) | ObjectKind::Piece(id) => id,
            };
            if self.unauthenticated.contains(&id) {
                continue;
            }
            let expected = match self.manifests.get(&id) {
                Some((m, _)) => expected_names(m, t, layout_targets).contains(&e.name),
                None => with_manifest.contains(&id),
            };
            if !expected {
                garbage.push(e.name.clone());
            }
        }
        (garbage, unknown)
    }
}

/// The objects manifest `m` places on target `t` of `targets`.
pub(crate) fn expected_names(m: &Manifest, t: usize, targets: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::from([manifest_name(&m.id)]);
    let shards = match m.layout {
        Layout::Mirror => targets,
        Layout::Erasure { data, parity } => data + parity,
    };
    if t < shards {
        let shard = m.layout.shard_of_target(t);
        names.extend((0..m.chunks.len() as u64).map(|c| piece_name(&m.id, c, shard)));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Kind;

    #[test]
    fn names_classify_back_to_what_wrote_them() {
        let id = BackupId::new(1_700_000_000_000, Kind::Full, 1).unwrap();
        assert_eq!(
            classify(&manifest_name(&id)),
            ObjectKind::Manifest(id.clone())
        );
        assert_eq!(
            classify(&piece_name(&id, 12, 3)),
            ObjectKind::Piece(id.clone())
        );
        assert_eq!(
            classify(&format!("{id}/{TEMP_PREFIX}c00000000.s00-1-2")),
            ObjectKind::Temp(Some(id.clone()))
        );
        assert_eq!(classify("README"), ObjectKind::Unknown);
        assert_eq!(classify(&format!("{id}/notes.txt")), ObjectKind::Unknown);
        assert_eq!(classify("other/manifest.json"), ObjectKind::Unknown);
    }
}
