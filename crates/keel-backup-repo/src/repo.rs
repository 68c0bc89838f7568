//! The repository: writes backups as sealed chunks spread over the targets
//! with the manifest last, and lists and reads them back with every check.
//! Object naming and listing live in `objects.rs`, scrubbing (verify,
//! repair) in `scrub.rs`, pruning in `prune.rs`.
//!
//! A backup exists once its manifest does; pieces without a manifest are
//! leftovers of an interrupted write, invisible to readers and removed by
//! [`Repository::prune`].
//!
//! Not safe against a concurrent writer or pruner on the same targets:
//! prune would take an in-progress write's pieces for leftovers. Run
//! backups and prunes of one repository from one place, one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::chain::{plan_restore, RestorePoint};
use crate::codec::{
    open_chunk, seal_chunk, ChunkKeys, Key, CHUNK_BYTES_MAX, CHUNK_BYTES_MIN, SEALED_BYTES_MAX,
};
use crate::layout::{self, expected_payload_hash, Layout, PieceSpec};
use crate::manifest::{
    mac_key, open_manifest, seal_manifest, BackupId, BackupMeta, ChunkInfo, Digest, Manifest,
    ManifestFault, CHUNKS_MAX, MANIFEST_BYTES_MAX, MANIFEST_FORMAT_VERSION,
};
use crate::objects::{classify, manifest_name, piece_name, Catalog, ObjectKind};
use crate::target::{blocking, ObjectEntry, Target};
use crate::BackupError;

/// Manifests fetched at once while listing: enough to hide S3 latency,
/// few enough to stay polite to the endpoint.
const MANIFEST_FETCH_CONCURRENCY: usize = 8;

/// Largest piece object: a whole sealed chunk plus its header (under 200
/// bytes), with room to spare.
pub(crate) const PIECE_BYTES_MAX: u64 = SEALED_BYTES_MAX as u64 + 4096;

/// What a scrub or read found for one piece on one target.
#[derive(Debug, Clone)]
pub(crate) enum PieceState {
    Good(Vec<u8>),
    Missing,
    Corrupt(String),
}

/// A set of targets, a layout and a key: where backups are stored and how.
pub struct Repository {
    pub(crate) targets: Vec<Target>,
    pub(crate) layout: Layout,
    pub(crate) keys: Arc<ChunkKeys>,
    pub(crate) mac_key: [u8; 32],
    chunk_bytes: usize,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of debug output.
        f.debug_struct("Repository")
            .field("targets", &self.targets)
            .field("layout", &self.layout)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// A repository over `targets` (order matters for an erasure layout:
    /// shard i lives on target i, so give them in the same order every
    /// time), writing new backups with `layout`. Does no I/O.
    pub fn open(targets: Vec<Target>, layout: Layout, key: Key) -> Result<Self, BackupError> {
        layout.validate_targets(targets.len())?;
        Ok(Self {
            targets,
            layout,
            keys: Arc::new(ChunkKeys::new(&key)),
            mac_key: mac_key(&key),
            chunk_bytes: CHUNK_BYTES_MAX,
        })
    }

    /// Uses chunks of `chunk_bytes` for new backups (between
    /// [`CHUNK_BYTES_MIN`] and [`CHUNK_BYTES_MAX`]); smaller chunks mean
    /// less memory and more objects.
    pub fn with_chunk_bytes(mut self, chunk_bytes: usize) -> Result<Self, BackupError> {
        if !(CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX).contains(&chunk_bytes) {
            return Err(BackupError::Config {
                reason: format!(
                    "chunk size {chunk_bytes} is outside {CHUNK_BYTES_MIN}..={CHUNK_BYTES_MAX} bytes"
                ),
            });
        }
        self.chunk_bytes = chunk_bytes;
        Ok(self)
    }

    /// The targets, in shard order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The layout new backups are written with.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Stores the content read from `reader` as a new backup described by
    /// `meta`, and returns its manifest.
    ///
    /// Content is read, sealed and stored one chunk at a time, so memory
    /// stays at a few chunks whatever the size. Every piece goes to every
    /// target before any manifest is written: if this fails or the process
    /// dies, no target shows the backup, and `prune` removes the leftovers.
    /// Fails if any target fails (a backup starts fully redundant); if that
    /// happens while manifests are written, targets that did get one show a
    /// complete backup, and `repair` copies the manifest to the rest.
    pub async fn write<R: AsyncRead + Unpin>(
        &self,
        meta: BackupMeta,
        mut reader: R,
    ) -> Result<Manifest, BackupError> {
        let id = meta.validate()?;
        self.ensure_unused(&id).await?;
        let mut chunks: Vec<ChunkInfo> = Vec::new();
        let mut content = blake3::Hasher::new();
        let mut content_bytes: u64 = 0;
        loop {
            let plain = read_chunk(&mut reader, self.chunk_bytes).await?;
            if plain.is_empty() {
                break;
            }
            if chunks.len() >= CHUNKS_MAX {
                return Err(BackupError::TooLarge {
                    what: "chunks in one backup",
                    got: chunks.len() as u64 + 1,
                    max: CHUNKS_MAX as u64,
                });
            }
            content.update(&plain);
            content_bytes += plain.len() as u64;
            let chunk = chunks.len() as u64;
            let (keys, job_id, layout) = (Arc::clone(&self.keys), id.clone(), self.layout);
            let (objects, info) =
                blocking(move || seal_and_frame(&keys, &job_id, chunk, &layout, &plain)).await??;
            self.put_pieces(objects).await?;
            chunks.push(info);
        }
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: id.clone(),
            kind: meta.kind,
            first_index: meta.first_index,
            last_index: meta.last_index,
            first_time_ms: meta.first_time_ms,
            last_time_ms: meta.last_time_ms,
            parent: meta.parent,
            layout: self.layout,
            chunk_bytes: self.chunk_bytes as u64,
            content_bytes,
            content_blake3: Digest::from(content.finalize()),
            chunks,
            created_ms: meta.created_ms,
            labels: meta.labels,
        };
        let sealed = Bytes::from(seal_manifest(&manifest, &self.mac_key));
        // Pair assertion: what we are about to publish reads back as itself.
        match open_manifest(&sealed, &id, &self.mac_key) {
            Ok(back) if back == manifest => {}
            other => {
                return Err(BackupError::ManifestInvalid {
                    id: id.to_string(),
                    reason: format!("manifest does not read back as written ({other:?}); a bug"),
                })
            }
        }
        let name = manifest_name(&id);
        let puts = self.targets.iter().map(|t| t.put(&name, sealed.clone()));
        join_all(puts)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
        tracing::info!(%id, chunks = manifest.chunks.len(), content_bytes, "backup written");
        Ok(manifest)
    }

    /// Refuses an id that has any object on any target: reusing an id
    /// would reuse AEAD nonces with different content.
    async fn ensure_unused(&self, id: &BackupId) -> Result<(), BackupError> {
        let prefix = format!("{id}/");
        let listings = join_all(self.targets.iter().map(|t| t.list())).await;
        for (target, listing) in self.targets.iter().zip(listings) {
            if listing?.iter().any(|e| e.name.starts_with(&prefix)) {
                return Err(BackupError::IdInUse {
                    id: id.to_string(),
                    target: target.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Stores one chunk's pieces: a mirror copy on every target, shard i
    /// on target i.
    async fn put_pieces(&self, objects: Vec<(String, Bytes)>) -> Result<(), BackupError> {
        let puts: Vec<_> = match self.layout {
            Layout::Mirror => self
                .targets
                .iter()
                .flat_map(|t| objects.iter().map(move |(n, b)| t.put(n, b.clone())))
                .collect(),
            Layout::Erasure { .. } => self
                .targets
                .iter()
                .zip(&objects)
                .map(|(t, (n, b))| t.put(n, b.clone()))
                .collect(),
        };
        join_all(puts)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    /// Every backup whose manifest authenticates on at least one target,
    /// oldest first. Unreachable targets are skipped while one answers.
    /// Errors with [`BackupError::ManifestAuth`] when manifests exist but
    /// none authenticates (almost always the wrong key).
    pub async fn list(&self) -> Result<Vec<Manifest>, BackupError> {
        let catalog = self.catalog().await?;
        if catalog.manifests.is_empty() {
            if let Some(id) = catalog.unauthenticated.first() {
                return Err(BackupError::ManifestAuth { id: id.to_string() });
            }
        }
        for id in &catalog.unauthenticated {
            tracing::warn!(%id, "no copy of this backup's manifest authenticates; run verify");
        }
        let mut out: Vec<Manifest> = catalog.manifests.into_values().map(|(m, _)| m).collect();
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    /// The backups to restore, in order, to reach `point` (see
    /// [`plan_restore`]).
    pub async fn plan_restore(&self, point: RestorePoint) -> Result<Vec<Manifest>, BackupError> {
        Ok(plan_restore(&self.list().await?, point)?)
    }

    /// The authenticated manifest of `id`, from the first target holding a
    /// good copy.
    pub async fn manifest(&self, id: &BackupId) -> Result<Manifest, BackupError> {
        let name = manifest_name(id);
        let mut fault: Option<BackupError> = None;
        for target in &self.targets {
            let bytes = match target.get(&name, MANIFEST_BYTES_MAX).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%target, error = %e, "manifest unreadable here; trying the next target");
                    fault.get_or_insert(e);
                    continue;
                }
            };
            match open_manifest(&bytes, id, &self.mac_key) {
                Ok(m) => return Ok(m),
                Err(ManifestFault::Auth) => {
                    fault = Some(BackupError::ManifestAuth { id: id.to_string() });
                }
                Err(ManifestFault::Invalid(reason)) => {
                    if !matches!(fault, Some(BackupError::ManifestAuth { .. })) {
                        fault = Some(BackupError::ManifestInvalid {
                            id: id.to_string(),
                            reason,
                        });
                    }
                }
            }
        }
        Err(fault.unwrap_or_else(|| BackupError::NotFound { id: id.to_string() }))
    }

    /// Restores backup `id` into `writer` and returns its manifest.
    ///
    /// The manifest is authenticated first (a wrong key fails before any
    /// byte is written), and each chunk is rebuilt from any good pieces and
    /// fully checked (shard checksums, sealed checksum, AEAD, content
    /// checksum) before it is written, so nothing past a bad chunk reaches
    /// `writer`. A failure can still leave the chunks before it written:
    /// restore into a temporary file and rename it into place only when
    /// this returns `Ok`.
    pub async fn read<W: AsyncWrite + Unpin>(
        &self,
        id: &BackupId,
        writer: &mut W,
    ) -> Result<Manifest, BackupError> {
        let manifest = self.read_chunks(id, &mut WriterOut(writer)).await?;
        writer.flush().await.map_err(BackupError::Output)?;
        Ok(manifest)
    }

    /// [`read`](Self::read) into a queue, one checked chunk at a time, for a
    /// reader on another thread (a restore installs a full backup as it
    /// arrives). The queue's capacity bounds what is held in memory. On
    /// `Ok` every chunk was sent and the whole content matched its
    /// checksum; on an error the receiver must discard what it got.
    pub async fn read_to_queue(
        &self,
        id: &BackupId,
        tx: &tokio::sync::mpsc::Sender<Bytes>,
    ) -> Result<Manifest, BackupError> {
        self.read_chunks(id, &mut QueueOut(tx)).await
    }

    async fn read_chunks(
        &self,
        id: &BackupId,
        out: &mut impl ChunkOut,
    ) -> Result<Manifest, BackupError> {
        let manifest = self.manifest(id).await?;
        manifest.layout.validate_targets(self.targets.len())?;
        let mut content = blake3::Hasher::new();
        for (n, info) in manifest.chunks.iter().enumerate() {
            let chunk = n as u64;
            let sealed = self.fetch_sealed(&manifest, chunk, info).await?;
            let (keys, job_id, job_info) = (Arc::clone(&self.keys), id.clone(), info.clone());
            let plain =
                blocking(move || open_chunk(&keys, &job_id, chunk, &job_info, &sealed)).await??;
            content.update(&plain);
            out.put(plain).await.map_err(BackupError::Output)?;
        }
        if Digest::from(content.finalize()) != manifest.content_blake3 {
            return Err(BackupError::ChunkCorrupt {
                id: id.to_string(),
                chunk: manifest.chunks.len() as u64,
                reason: "the whole content does not match its checksum".to_owned(),
            });
        }
        Ok(manifest)
    }

    /// Rebuilds one sealed chunk from the cheapest good pieces: a mirror
    /// tries copies in target order; erasure reads the data shards and
    /// fetches parity only for those that fail.
    async fn fetch_sealed(
        &self,
        m: &Manifest,
        chunk: u64,
        info: &ChunkInfo,
    ) -> Result<Vec<u8>, BackupError> {
        let mut pieces: Vec<Option<Vec<u8>>> = Vec::new();
        match m.layout {
            Layout::Mirror => {
                for t in 0..self.targets.len() {
                    if let PieceState::Good(p) = self.fetch_piece(t, m, chunk, info).await {
                        pieces.push(Some(p));
                        break;
                    }
                }
            }
            Layout::Erasure { data, parity } => {
                pieces = self.fetch_pieces(0..data, m, chunk, info).await;
                if pieces.iter().any(Option::is_none) {
                    pieces.extend(self.fetch_pieces(data..data + parity, m, chunk, info).await);
                } else {
                    pieces.resize(data + parity, None);
                }
            }
        }
        layout::join(&m.layout, &m.id, chunk, info, &pieces)
    }

    async fn fetch_pieces(
        &self,
        targets: std::ops::Range<usize>,
        m: &Manifest,
        chunk: u64,
        info: &ChunkInfo,
    ) -> Vec<Option<Vec<u8>>> {
        let fetches = targets.map(|t| self.fetch_piece(t, m, chunk, info));
        join_all(fetches)
            .await
            .into_iter()
            .map(|s| match s {
                PieceState::Good(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Reads and checks the piece of `chunk` that target `t` holds.
    pub(crate) async fn fetch_piece(
        &self,
        t: usize,
        m: &Manifest,
        chunk: u64,
        info: &ChunkInfo,
    ) -> PieceState {
        let shard = m.layout.shard_of_target(t);
        let Some(target) = self.targets.get(t) else {
            return PieceState::Missing;
        };
        let spec = piece_spec(m, chunk, info, shard);
        match target
            .get(&piece_name(&m.id, chunk, shard), PIECE_BYTES_MAX)
            .await
        {
            Ok(None) => PieceState::Missing,
            Ok(Some(bytes)) => match layout::decode_piece(&spec, &bytes) {
                Ok(payload) => PieceState::Good(payload),
                Err(reason) => {
                    tracing::warn!(%target, id = %m.id, chunk, shard, %reason, "bad piece");
                    PieceState::Corrupt(reason)
                }
            },
            Err(e) => {
                tracing::warn!(%target, id = %m.id, chunk, shard, error = %e, "piece unreadable");
                PieceState::Corrupt(format!("unreadable: {e}"))
            }
        }
    }
}

/// What the piece of `chunk` numbered `shard` must look like.
pub(crate) fn piece_spec<'a>(
    m: &'a Manifest,
    chunk: u64,
    info: &ChunkInfo,
    shard: usize,
) -> PieceSpec<'a> {
    PieceSpec {
        id: &m.id,
        layout: m.layout,
        chunk,
        shard,
        sealed_bytes: info.sealed_bytes,
        payload_blake3: expected_payload_hash(&m.layout, info, shard),
    }
}

/// Seals one chunk and frames its pieces (CPU work, run off the async
/// threads): returns (object name, object bytes) per shard and the chunk's
/// manifest entry.
fn seal_and_frame(
    keys: &ChunkKeys,
    id: &BackupId,
    chunk: u64,
    layout: &Layout,
    plain: &[u8],
) -> Result<(Vec<(String, Bytes)>, ChunkInfo), BackupError> {
    let (sealed, mut info) = seal_chunk(keys, id, chunk, plain)?;
    let payloads = layout::split(layout, &sealed, &mut info)?;
    let objects = payloads
        .iter()
        .enumerate()
        .map(|(shard, payload)| {
            let spec = PieceSpec {
                id,
                layout: *layout,
                chunk,
                shard,
                sealed_bytes: info.sealed_bytes,
                payload_blake3: expected_payload_hash(layout, &info, shard),
            };
            (
                piece_name(id, chunk, shard),
                Bytes::from(layout::encode_piece(&spec, payload)),
            )
        })
        .collect();
    Ok((objects, info))
}

/// Reads up to `bytes_max` bytes, fewer only at the end of the input.
async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    bytes_max: usize,
) -> Result<Vec<u8>, BackupError> {
    let mut buf = Vec::with_capacity(bytes_max);
    (&mut *reader)
        .take(bytes_max as u64)
        .read_to_end(&mut buf)
        .await
        .map_err(BackupError::Input)?;
    Ok(buf)
}

/// Where [`Repository::read_chunks`] puts each checked chunk.
trait ChunkOut {
    async fn put(&mut self, plain: Vec<u8>) -> std::io::Result<()>;
}

struct WriterOut<'a, W>(&'a mut W);

impl<W: AsyncWrite + Unpin> ChunkOut for WriterOut<'_, W> {
    async fn put(&mut self, plain: Vec<u8>) -> std::io::Result<()> {
        self.0.write_all(&plain).await
    }
}

struct QueueOut<'a>(&'a tokio::sync::mpsc::Sender<Bytes>);

impl ChunkOut for QueueOut<'_> {
    async fn put(&mut self, plain: Vec<u8>) -> std::io::Result<()> {
        self.0
            .send(Bytes::from(plain))
            .await
            .map_err(|_| std::io::Error::other("the queue's reader stopped"))
    }
}

impl Repository {
    /// Lists every target and authenticates one manifest copy per backup.
    /// Fails only if no target can be listed.
    pub(crate) async fn catalog(&self) -> Result<Catalog, BackupError> {
        let raw = join_all(self.targets.iter().map(|t| t.list())).await;
        if raw.iter().all(Result::is_err) {
            if let Some(Err(e)) = raw.into_iter().next() {
                return Err(e);
            }
            return Err(BackupError::Config {
                reason: "no targets".to_owned(),
            });
        }
        let listings: Vec<Result<Vec<ObjectEntry>, String>> = raw
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect();
        let mut holders: BTreeMap<BackupId, Vec<usize>> = BTreeMap::new();
        for (t, listing) in listings.iter().enumerate() {
            for e in listing.iter().flatten() {
                if let ObjectKind::Manifest(id) = classify(&e.name) {
                    holders.entry(id).or_default().push(t);
                }
            }
        }
        let opened: Vec<(BackupId, Option<(Manifest, Bytes)>)> = futures::stream::iter(holders)
            .map(|(id, ts)| async move {
                let found = self.first_good_manifest(&id, &ts).await;
                (id, found)
            })
            .buffer_unordered(MANIFEST_FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut catalog = Catalog {
            listings,
            manifests: BTreeMap::new(),
            unauthenticated: BTreeSet::new(),
        };
        for (id, found) in opened {
            match found {
                Some(m) => {
                    catalog.manifests.insert(id, m);
                }
                None => {
                    catalog.unauthenticated.insert(id);
                }
            }
        }
        Ok(catalog)
    }

    async fn first_good_manifest(
        &self,
        id: &BackupId,
        targets: &[usize],
    ) -> Option<(Manifest, Bytes)> {
        let name = manifest_name(id);
        for &t in targets {
            let Ok(Some(bytes)) = self.targets[t].get(&name, MANIFEST_BYTES_MAX).await else {
                continue;
            };
            if let Ok(m) = open_manifest(&bytes, id, &self.mac_key) {
                return Some((m, bytes));
            }
        }
        None
    }
}
