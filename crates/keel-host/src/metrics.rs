//! The Prometheus series of a [`HostSample`].

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::HostSample;

/// The prefix the registry given to [`HostMetrics::register`] must carry
/// for the series to have their documented names (`keel_process_open_fds`
/// and so on): the node's registry is made with it.
pub const REGISTRY_PREFIX: &str = "keel";

/// The host and process series, exported from the latest [`HostSample`].
///
/// Registered as a collector that writes, at each scrape, the sample last
/// given to [`HostMetrics::update`]. Values the kernel keeps as ever-growing
/// totals (CPU seconds, bytes read and written, device I/O time) are
/// exported as true counters, with the kernel's value as it is, so
/// `rate()` works on them and their `_total` names are honest; the others
/// are gauges. A series whose value is absent from the sample (`None`) is
/// left out of the scrape rather than written as 0: a data directory on
/// tmpfs has no `keel_data_dir_device_*` series, and before the first
/// update there are no host series at all. An alert on a missing series
/// needs `absent()`.
///
/// The names below are those written by a registry with the prefix
/// [`REGISTRY_PREFIX`]; prometheus_client adds `_total` to counters.
///
/// | series | type | unit |
/// |---|---|---|
/// | `keel_process_cpu_seconds_total` | counter | seconds |
/// | `keel_process_resident_memory_bytes` | gauge | bytes |
/// | `keel_process_open_fds` | gauge | |
/// | `keel_process_max_fds` | gauge | |
/// | `keel_process_read_bytes_total` | counter | bytes |
/// | `keel_process_written_bytes_total` | counter | bytes |
/// | `keel_process_uptime_seconds` | gauge | seconds |
/// | `keel_host_cpu_busy_ratio` | gauge | 0 to 1 |
/// | `keel_host_memory_total_bytes` | gauge | bytes |
/// | `keel_host_memory_available_bytes` | gauge | bytes |
/// | `keel_host_load1` | gauge | |
/// | `keel_data_dir_size_bytes` | gauge | bytes |
/// | `keel_data_dir_free_bytes` | gauge | bytes |
/// | `keel_data_dir_used_bytes` | gauge | bytes |
/// | `keel_data_dir_device_read_bytes_total` | counter | bytes |
/// | `keel_data_dir_device_written_bytes_total` | counter | bytes |
/// | `keel_data_dir_device_io_seconds_total` | counter | seconds |
#[derive(Debug, Clone, Default)]
pub struct HostMetrics {
    latest: Arc<Mutex<Option<HostSample>>>,
}

impl HostMetrics {
    /// Metrics with no sample yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the series to `registry`, which should have the prefix
    /// [`REGISTRY_PREFIX`] (the node's has). A registry with another
    /// prefix renames them: the gateway's, `keel_gateway`, would write
    /// `keel_gateway_process_open_fds`, which the alert rules do not know;
    /// a gateway should register these in a root registry with the prefix
    /// `keel` and keep its own series in `sub_registry_with_prefix("gateway")`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Scrape {
            latest: Arc::clone(&self.latest),
        }));
    }

    /// Makes `sample` the one written at the next scrapes.
    pub fn update(&self, sample: &HostSample) {
        *keel_protocol::sync::lock(&self.latest) = Some(sample.clone());
    }
}

/// The collector [`HostMetrics::register`] adds: it shares the latest sample.
#[derive(Debug)]
struct Scrape {
    latest: Arc<Mutex<Option<HostSample>>>,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A copy, so the lock is not held while the scrape is written.
        let Some(s) = keel_protocol::sync::lock(&self.latest).clone() else {
            return Ok(());
        };
        let e = &mut encoder;
        counter(
            e,
            "process_cpu_seconds",
            "CPU time of the process, user and system",
            s.process_cpu_seconds,
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident set size of the process",
            s.process_resident_memory_bytes,
        )?;
        gauge(
            e,
            "process_open_fds",
            "File descriptors the process has open",
            s.process_open_fds,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Soft limit on the process's open file descriptors",
            s.process_max_fds,
        )?;
        counter(
            e,
            "process_read_bytes",
            "Bytes the process caused to be read from storage",
            s.process_read_bytes,
        )?;
        counter(
            e,
            "process_written_bytes",
            "Bytes the process caused to be written to storage",
            s.process_written_bytes,
        )?;
        gauge(
            e,
            "process_uptime_seconds",
            "Seconds since the process started",
            s.process_uptime_seconds,
        )?;
        gauge(
            e,
            "host_cpu_busy_ratio",
            "Share of host CPU time busy between the last two samples",
            s.host_cpu_busy_ratio,
        )?;
        gauge(
            e,
            "host_memory_total_bytes",
            "Usable RAM of the host",
            s.host_memory_total_bytes,
        )?;
        gauge(
            e,
            "host_memory_available_bytes",
            "RAM allocatable without swapping",
            s.host_memory_available_bytes,
        )?;
        gauge(
            e,
            "host_load1",
            "Host run-queue average over one minute",
            s.host_load1,
        )?;
        gauge(
            e,
            "data_dir_size_bytes",
            "Size of the data directory's filesystem",
            s.data_dir_size_bytes,
        )?;
        gauge(
            e,
            "data_dir_free_bytes",
            "Free space of the data directory's filesystem for the process",
            s.data_dir_free_bytes,
        )?;
        gauge(
            e,
            "data_dir_used_bytes",
            "Used space of the data directory's filesystem",
            s.data_dir_used_bytes,
        )?;
        counter(
            e,
            "data_dir_device_read_bytes",
            "Bytes read from the data directory's block device",
            s.data_dir_device_read_bytes,
        )?;
        counter(
            e,
            "data_dir_device_written_bytes",
            "Bytes written to the data directory's block device",
            s.data_dir_device_written_bytes,
        )?;
        counter(
            e,
            "data_dir_device_io_seconds",
            "Time the data directory's block device had I/O in flight",
            s.data_dir_device_io_seconds,
        )?;
        Ok(())
    }
}

/// Writes one counter series, or nothing when `value` is absent.
fn counter<N>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<N>,
) -> Result<(), std::fmt::Error>
where
    N: EncodeCounterValue,
{
    let Some(value) = value else { return Ok(()) };
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one gauge series, or nothing when `value` is absent.
fn gauge<N>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<N>,
) -> Result<(), std::fmt::Error>
where
    N: EncodeGaugeValue,
{
    let Some(value) = value else { return Ok(()) };
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}
