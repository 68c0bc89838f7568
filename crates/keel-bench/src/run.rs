//! `keel bench run`: one workload against a running Keel endpoint (a node,
//! several nodes, or the gateway), closed or open loop.

use std::sync::Arc;

use keel_client::Client;

use crate::driver::{drive, progress_bar};
use crate::keel_target::{KeelLoad, KeelTarget};
use crate::report::Report;
use crate::seed::{seed, Catalogue};
use crate::workload::{LoadSpec, Workload};
use crate::BenchError;

/// What `keel bench run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// `host:port` of each endpoint; clients start spread over them.
    pub endpoints: Vec<String>,
    /// Admin token (ordering for any customer and `/v1/batch` need it).
    pub token: Option<String>,
    /// The workload.
    pub workload: Workload,
    /// Clients, duration and pacing.
    pub spec: LoadSpec,
    /// Uniform SKUs.
    pub skus: u64,
    /// Units of the flash-sale SKU.
    pub flash_stock: u64,
    /// Orders per `/v1/batch` request of the batch workload.
    pub batch_size: u64,
    /// Seed the catalogue first (replays when it exists).
    pub seed: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Makes keys and the flash SKU unique to this run.
    pub tag: String,
}

/// Runs the workload and returns its figures.
pub async fn run(cfg: &RunConfig) -> Result<Report, BenchError> {
    if cfg.endpoints.is_empty() {
        return Err(BenchError::Arg("at least one endpoint is needed".into()));
    }
    let flash_sku = format!("FLASH-{}", cfg.tag);
    if cfg.seed {
        let admin = Client::new(cfg.endpoints.clone(), cfg.token.clone());
        let flash =
            (cfg.workload == Workload::FlashSale).then(|| (flash_sku.clone(), cfg.flash_stock));
        seed(
            &admin,
            &Catalogue {
                skus: cfg.skus,
                customers: cfg.spec.clients,
                flash,
            },
        )
        .await?;
    }
    let target = Arc::new(KeelTarget::new(
        cfg.endpoints.clone(),
        cfg.token.clone(),
        cfg.spec.clients,
        KeelLoad {
            workload: cfg.workload,
            skus: cfg.skus,
            customers: cfg.spec.clients,
            flash_sku,
            batch_size: cfg.batch_size,
            tag: cfg.tag.clone(),
        },
    ));
    let pb = progress_bar(
        &format!("keel {} x{}", cfg.workload, cfg.spec.clients),
        cfg.spec.warmup + cfg.spec.duration,
        cfg.progress,
    );
    let m = drive(target, &cfg.spec, &pb).await?;
    Ok(Report::new(
        "keel",
        cfg.workload.name(),
        cfg.spec.clients,
        &cfg.spec.mode_label(),
        &m,
    ))
}
