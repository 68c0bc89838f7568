//! `keel demo`: the arguments of the demo; the demo itself is `keel_demo`.

use std::path::PathBuf;

use anyhow::Context;
use keel_demo::DemoConfig;

/// Arguments of `keel demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds of shopping.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(4..=keel_demo::DURATION_S_MAX))]
    duration_s: u64,
    /// Concurrent shoppers over the whole catalogue.
    #[arg(long, default_value_t = 32)]
    shoppers: u64,
    /// Concurrent buyers in the flash sale.
    #[arg(long, default_value_t = 16)]
    flash_buyers: u64,
    /// Units of the flash-sale SKU (fewer than its buyers will want).
    #[arg(long, default_value_t = 200)]
    flash_stock: u64,
    /// Port of node 1 (0 picks free ports).
    #[arg(long, default_value_t = 7201)]
    base_port: u16,
    /// Where the demo cluster keeps its data (wiped at start).
    #[arg(long, default_value = "keel-data/demo")]
    data_dir: PathBuf,
    /// Port of the gateway the shoppers go through (0 picks a free one).
    #[arg(long, default_value_t = 7200)]
    gateway_port: u16,
    /// Shoppers talk to the nodes directly (with the client's own
    /// failover) instead of through the gateway.
    #[arg(long)]
    direct: bool,
    /// Run every link in plaintext (on loopback) instead of TLS.
    #[arg(long)]
    plaintext: bool,
}

/// Runs the demo; the error names the checks that failed.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = DemoConfig {
        keel_bin: std::env::current_exe().context("locating the keel binary")?,
        duration_s: args.duration_s,
        shoppers: args.shoppers,
        flash_buyers: args.flash_buyers,
        flash_stock: args.flash_stock,
        base_port: args.base_port,
        gateway_port: args.gateway_port,
        data_dir: args.data_dir,
        direct: args.direct,
        tls: !args.plaintext,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(keel_demo::run(config)).context("keel demo")
}
