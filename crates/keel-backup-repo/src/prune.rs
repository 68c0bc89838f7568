//! Pruning: applies a [`Retention`] to the repository (the decision is the
//! pure [`plan_prune`]) and removes leftovers of interrupted writes.

use crate::chain::{plan_prune, Retention};
use crate::manifest::{BackupId, Manifest};
use crate::objects::{manifest_name, Catalog};
use crate::repo::Repository;
use crate::report::{FailedObject, ObjectRef, PruneReport};
use crate::BackupError;

impl Repository {
    /// Deletes full backups beyond the newest `retention.keep_full`, with
    /// every backup that only they could restore (see
    /// [`plan_prune`](crate::plan_prune)), and removes leftovers of
    /// interrupted writes. A backup's manifests go first, so a half-pruned
    /// backup is invisible rather than broken; its pieces go only once no
    /// target shows its manifest. Backups whose manifests do not
    /// authenticate are never touched. Must not run while a write to the
    /// same repository is in progress (its pieces look like leftovers).
    pub async fn prune(&self, retention: Retention) -> Result<PruneReport, BackupError> {
        if retention.keep_full == 0 {
            return Err(BackupError::Config {
                reason: "keep_full must be at least 1: pruning every full backup would leave nothing to restore".to_owned(),
            });
        }
        let catalog = self.catalog().await?;
        if catalog.manifests.is_empty() {
            if let Some(id) = catalog.unauthenticated.first() {
                return Err(BackupError::ManifestAuth { id: id.to_string() });
            }
        }
        let manifests: Vec<Manifest> = catalog.manifests.values().map(|(m, _)| m.clone()).collect();
        let plan = plan_prune(&manifests, retention);
        let mut report = PruneReport {
            kept: plan.keep.clone(),
            unauthenticated: catalog.unauthenticated.iter().cloned().collect(),
            ..PruneReport::default()
        };
        for (t, listing) in catalog.listings.iter().enumerate() {
            if let Err(reason) = listing {
                report.failed.push(FailedObject {
                    target: self.targets[t].to_string(),
                    name: String::new(),
                    reason: format!("target unreachable, nothing deleted there: {reason}"),
                });
            }
        }
        for id in &plan.delete {
            if self.delete_backup(id, &catalog, &mut report).await {
                report.deleted.push(id.clone());
            }
        }
        for t in 0..self.targets.len() {
            let (garbage, _) = catalog.garbage_and_unknown(t, self.targets.len());
            for name in garbage {
                self.delete_logged(t, &name, &mut report.garbage_removed, &mut report.failed)
                    .await;
            }
        }
        Ok(report)
    }

    /// Deletes one backup everywhere: manifests first, then, only if every
    /// manifest copy is gone, its other objects. Whether it is fully gone.
    async fn delete_backup(
        &self,
        id: &BackupId,
        catalog: &Catalog,
        report: &mut PruneReport,
    ) -> bool {
        let prefix = format!("{id}/");
        let manifest = manifest_name(id);
        let mut removed = Vec::new();
        let mut ok = true;
        for (t, listing) in catalog.listings.iter().enumerate() {
            let Ok(entries) = listing else {
                ok = false;
                continue;
            };
            if entries.iter().any(|e| e.name == manifest) {
                ok &= self
                    .delete_logged(t, &manifest, &mut removed, &mut report.failed)
                    .await;
            }
        }
        if !ok {
            return false;
        }
        for (t, listing) in catalog.listings.iter().enumerate() {
            for e in listing.iter().flatten() {
                if e.name.starts_with(&prefix) && e.name != manifest {
                    ok &= self
                        .delete_logged(t, &e.name, &mut removed, &mut report.failed)
                        .await;
                }
            }
        }
        ok
    }

    async fn delete_logged(
        &self,
        t: usize,
        name: &str,
        done: &mut Vec<ObjectRef>,
        failed: &mut Vec<FailedObject>,
    ) -> bool {
        let target = &self.targets[t];
        match target.delete(name).await {
            Ok(()) => {
                done.push(ObjectRef {
                    target: target.to_string(),
                    name: name.to_owned(),
                });
                true
            }
            Err(e) => {
                failed.push(FailedObject {
                    target: target.to_string(),
                    name: name.to_owned(),
                    reason: e.to_string(),
                });
                false
            }
        }
    }
}
