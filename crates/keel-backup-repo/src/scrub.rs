//! Scrubbing: read every object on every target, check it against the
//! manifest's checksums (bit rot, truncation, loss), and optionally rebuild
//! what is missing or corrupt from the survivors.

use bytes::Bytes;
use futures::future::join_all;

use crate::layout::{self, Layout};
use crate::manifest::{open_manifest, Manifest, MANIFEST_BYTES_MAX};
use crate::objects::{manifest_name, piece_name, Catalog};
use crate::repo::{piece_spec, PieceState, Repository};
use crate::report::{
    CorruptObject, FailedObject, LostChunk, ObjectRef, RepairReport, TargetReport, VerifyReport,
};
use crate::BackupError;

impl Repository {
    /// Reads every manifest copy and every shard or copy on every target
    /// and reports, per target, what is missing, corrupt or left over, and
    /// which chunks can no longer be rebuilt. Changes nothing.
    pub async fn verify(&self) -> Result<VerifyReport, BackupError> {
        Ok(self.scrub(false).await?.before)
    }

    /// Scrubs like [`verify`](Self::verify), then rewrites every missing
    /// or corrupt shard, copy and manifest from the survivors (each rebuilt
    /// chunk checked against its sealed checksum before anything is
    /// written). Garbage is left for [`prune`](Self::prune).
    pub async fn repair(&self) -> Result<RepairReport, BackupError> {
        self.scrub(true).await
    }

    async fn scrub(&self, fix: bool) -> Result<RepairReport, BackupError> {
        let catalog = self.catalog().await?;
        let mut out = RepairReport::default();
        out.before.targets = self
            .targets
            .iter()
            .map(|t| TargetReport::new(t.to_string()))
            .collect();
        let reachable: Vec<bool> = catalog.listings.iter().map(Result::is_ok).collect();
        for (report, listing) in out.before.targets.iter_mut().zip(&catalog.listings) {
            if let Err(reason) = listing {
                report.unreachable = Some(reason.clone());
            }
        }
        out.before.unauthenticated = catalog.unauthenticated.iter().cloned().collect();
        for (manifest, sealed) in catalog.manifests.values() {
            out.before.backups_checked += 1;
            for chunk in 0..manifest.chunks.len() as u64 {
                self.scrub_chunk(manifest, chunk, &reachable, fix, &mut out)
                    .await;
            }
            // Manifests last, as in a write: a target shows the backup
            // again only once its pieces are back.
            self.scrub_manifest(manifest, sealed, &reachable, fix, &mut out)
                .await;
        }
        self.note_garbage(&catalog, &mut out.before);
        Ok(out)
    }

    /// Targets holding a piece of a chunk of `m`, with the shard each holds.
    fn holders(&self, m: &Manifest) -> Vec<(usize, usize)> {
        let shards = match m.layout {
            Layout::Mirror => self.targets.len(),
            Layout::Erasure { data, parity } => data + parity,
        };
        (0..shards.min(self.targets.len()))
            .map(|t| (t, m.layout.shard_of_target(t)))
            .collect()
    }

    async fn scrub_chunk(
        &self,
        m: &Manifest,
        chunk: u64,
        reachable: &[bool],
        fix: bool,
        out: &mut RepairReport,
    ) {
        let Some(info) = usize::try_from(chunk).ok().and_then(|c| m.chunks.get(c)) else {
            return;
        };
        let holders: Vec<(usize, usize)> = self
            .holders(m)
            .into_iter()
            .filter(|&(t, _)| reachable[t])
            .collect();
        let states = join_all(
            holders
                .iter()
                .map(|&(t, _)| self.fetch_piece(t, m, chunk, info)),
        )
        .await;
        // Indexed by shard: `holders` gives shards below k+m (erasure) or
        // shard 0 (mirror), so every index below is in range.
        let mut good: Vec<Option<Vec<u8>>> = vec![None; m.layout.shard_count_in_manifest().max(1)];
        let mut bad: Vec<(usize, usize)> = Vec::new();
        for (&(t, shard), state) in holders.iter().zip(states) {
            let name = piece_name(&m.id, chunk, shard);
            let report = &mut out.before.targets[t];
            match state {
                PieceState::Good(payload) => {
                    report.objects_ok += 1;
                    if good[shard].is_none() {
                        good[shard] = Some(payload);
                    }
                }
                PieceState::Missing => {
                    report.missing.push(name);
                    bad.push((t, shard));
                }
                PieceState::Corrupt(reason) => {
                    report.corrupt.push(CorruptObject { name, reason });
                    bad.push((t, shard));
                }
            }
        }
        let have = good.iter().filter(|p| p.is_some()).count();
        let need = m.layout.pieces_needed();
        if have < need {
            out.before.lost_chunks.push(LostChunk {
                id: m.id.clone(),
                chunk,
                have,
                need,
            });
            return;
        }
        if fix && !bad.is_empty() {
            self.rebuild(m, chunk, &good, &bad, out).await;
        }
    }

    /// Rewrites the `bad` pieces of a chunk from the `good` ones.
    async fn rebuild(
        &self,
        m: &Manifest,
        chunk: u64,
        good: &[Option<Vec<u8>>],
        bad: &[(usize, usize)],
        out: &mut RepairReport,
    ) {
        let fail = |out: &mut RepairReport, reason: String| {
            for &(t, shard) in bad {
                out.failed.push(FailedObject {
                    target: self.targets[t].to_string(),
                    name: piece_name(&m.id, chunk, shard),
                    reason: reason.clone(),
                });
            }
        };
        let Some(info) = usize::try_from(chunk).ok().and_then(|c| m.chunks.get(c)) else {
            return;
        };
        let payloads = match rebuild_payloads(m, chunk, good) {
            Ok(p) => p,
            Err(e) => return fail(out, e.to_string()),
        };
        let writes = bad.iter().map(|&(t, shard)| {
            let spec = piece_spec(m, chunk, info, shard);
            let bytes = Bytes::from(layout::encode_piece(&spec, &payloads[shard]));
            let name = piece_name(&m.id, chunk, shard);
            async move { (t, name.clone(), self.targets[t].put(&name, bytes).await) }
        });
        for (t, name, result) in join_all(writes).await {
            record(out, self.targets[t].to_string(), name, result);
        }
    }

    async fn scrub_manifest(
        &self,
        m: &Manifest,
        sealed: &Bytes,
        reachable: &[bool],
        fix: bool,
        out: &mut RepairReport,
    ) {
        let name = &manifest_name(&m.id);
        let reads = (0..self.targets.len())
            .filter(|&t| reachable[t])
            .map(|t| async move { (t, self.targets[t].get(name, MANIFEST_BYTES_MAX).await) });
        let mut to_write = Vec::new();
        for (t, result) in join_all(reads).await {
            let report = &mut out.before.targets[t];
            match result {
                Ok(Some(bytes)) => match open_manifest(&bytes, &m.id, &self.mac_key) {
                    Ok(_) => report.objects_ok += 1,
                    Err(fault) => {
                        report.corrupt.push(CorruptObject {
                            name: name.to_owned(),
                            reason: fault.to_string(),
                        });
                        to_write.push(t);
                    }
                },
                Ok(None) => {
                    report.missing.push(name.to_owned());
                    to_write.push(t);
                }
                Err(e) => {
                    report.corrupt.push(CorruptObject {
                        name: name.to_owned(),
                        reason: format!("unreadable: {e}"),
                    });
                    to_write.push(t);
                }
            }
        }
        if !fix || out.before.lost_chunks.iter().any(|l| l.id == m.id) {
            // A backup with a lost chunk stays invisible where it was.
            return;
        }
        let writes = to_write
            .into_iter()
            .map(|t| async move { (t, self.targets[t].put(name, sealed.clone()).await) });
        for (t, result) in join_all(writes).await {
            record(out, self.targets[t].to_string(), name.to_owned(), result);
        }
    }

    fn note_garbage(&self, catalog: &Catalog, report: &mut VerifyReport) {
        for (t, target) in report.targets.iter_mut().enumerate() {
            let (garbage, unknown) = catalog.garbage_and_unknown(t, self.targets.len());
            target.garbage = garbage;
            target.unknown = unknown;
        }
    }
}

/// Every piece payload of a chunk, rebuilt from the good ones and checked
/// against the manifest before anything is written from it.
fn rebuild_payloads(
    m: &Manifest,
    chunk: u64,
    good: &[Option<Vec<u8>>],
) -> Result<Vec<Vec<u8>>, BackupError> {
    let info = usize::try_from(chunk)
        .ok()
        .and_then(|c| m.chunks.get(c))
        .ok_or_else(|| BackupError::ChunkCorrupt {
            id: m.id.to_string(),
            chunk,
            reason: "chunk is not in the manifest".to_owned(),
        })?;
    let sealed = layout::join(&m.layout, &m.id, chunk, info, good)?;
    let corrupt = |reason: &str| BackupError::ChunkCorrupt {
        id: m.id.to_string(),
        chunk,
        reason: reason.to_owned(),
    };
    if crate::manifest::Digest::of(&sealed) != info.sealed_blake3 {
        return Err(corrupt("rebuilt chunk does not match its sealed checksum"));
    }
    let mut check = info.clone();
    let payloads = layout::split(&m.layout, &sealed, &mut check)?;
    if check.shard_blake3 != info.shard_blake3 {
        return Err(corrupt("re-encoded shards do not match the manifest"));
    }
    Ok(payloads)
}

fn record(out: &mut RepairReport, target: String, name: String, result: Result<(), BackupError>) {
    match result {
        Ok(()) => out.rewritten.push(ObjectRef { target, name }),
        Err(e) => out.failed.push(FailedObject {
            target,
            name,
            reason: e.to_string(),
        }),
    }
}
