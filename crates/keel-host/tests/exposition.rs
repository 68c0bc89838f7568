//! The exported series names, which the alert rules rely on.
#![allow(clippy::unwrap_used)]

use keel_host::{HostMetrics, HostSample, HostSampler, REGISTRY_PREFIX};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Every series, as a scrape writes it.
const NAMES: [&str; 17] = [
    "keel_process_cpu_seconds_total",
    "keel_process_resident_memory_bytes",
    "keel_process_open_fds",
    "keel_process_max_fds",
    "keel_process_read_bytes_total",
    "keel_process_written_bytes_total",
    "keel_host_cpu_busy_ratio",
    "keel_host_memory_total_bytes",
    "keel_host_memory_available_bytes",
    "keel_host_load1",
    "keel_data_dir_free_bytes",
    "keel_data_dir_used_bytes",
    "keel_data_dir_size_bytes",
    "keel_data_dir_device_read_bytes_total",
    "keel_data_dir_device_written_bytes_total",
    "keel_data_dir_device_io_seconds_total",
    "keel_process_uptime_seconds",
];

/// A sample with every field present.
fn full_sample() -> HostSample {
    HostSample {
        process_cpu_seconds: Some(1.5),
        process_cpu_cores: Some(0.25),
        process_resident_memory_bytes: Some(1 << 20),
        process_open_fds: Some(12),
        process_max_fds: Some(1024),
        process_read_bytes: Some(4096),
        process_written_bytes: Some(8192),
        process_uptime_seconds: Some(3.0),
        host_cpu_busy_ratio: Some(0.5),
        host_memory_total_bytes: Some(8 << 30),
        host_memory_available_bytes: Some(4 << 30),
        host_load1: Some(0.7),
        host_load5: Some(0.5),
        host_load15: Some(0.3),
        data_dir_size_bytes: Some(100 << 30),
        data_dir_free_bytes: Some(60 << 30),
        data_dir_used_bytes: Some(40 << 30),
        data_dir_device: Some("vda".to_owned()),
        data_dir_device_read_bytes: Some(512),
        data_dir_device_written_bytes: Some(1024),
        data_dir_device_io_seconds: Some(0.125),
    }
}

fn render(metrics: &HostMetrics) -> String {
    let mut registry = Registry::with_prefix(REGISTRY_PREFIX);
    metrics.register(&mut registry);
    let mut out = String::new();
    encode(&mut out, &registry).unwrap();
    out
}

/// The value of the sample line of `name`, if there is one.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[test]
fn every_series_is_written_with_its_documented_name() {
    let metrics = HostMetrics::new();
    metrics.update(&full_sample());
    let text = render(&metrics);
    for name in NAMES {
        assert!(value(&text, name).is_some(), "{name} not in:\n{text}");
    }
    assert_eq!(value(&text, "keel_process_cpu_seconds_total"), Some(1.5));
    assert_eq!(
        value(&text, "keel_data_dir_device_io_seconds_total"),
        Some(0.125)
    );
    assert!(
        text.contains("# TYPE keel_process_read_bytes counter"),
        "{text}"
    );
    assert!(text.contains("# TYPE keel_host_load1 gauge"), "{text}");
}

#[test]
fn absent_values_are_left_out_not_written_as_zero() {
    let metrics = HostMetrics::new();
    assert_eq!(
        value(&render(&metrics), "keel_host_load1"),
        None,
        "no sample yet"
    );
    let mut sample = full_sample();
    sample.data_dir_device = None;
    sample.data_dir_device_read_bytes = None;
    sample.data_dir_device_written_bytes = None;
    sample.data_dir_device_io_seconds = None;
    metrics.update(&sample);
    let text = render(&metrics);
    assert!(!text.contains("keel_data_dir_device"), "{text}");
    assert!(value(&text, "keel_data_dir_free_bytes").is_some());
}

#[test]
fn a_real_sample_renders_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let mut sampler = HostSampler::new(Some(dir.path().to_owned()));
    let metrics = HostMetrics::new();
    let mut registry = Registry::with_prefix(REGISTRY_PREFIX);
    metrics.register(&mut registry);
    metrics.update(&sampler.sample());
    // The busy share needs the host's tick counters to move between two
    // samples; they advance every 10 ms or so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let sample = sampler.sample();
        metrics.update(&sample);
        if sample.host_cpu_busy_ratio.is_some() || std::time::Instant::now() > deadline {
            break;
        }
    }
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert!(
        value(&text, "keel_process_resident_memory_bytes").unwrap() > 0.0,
        "{text}"
    );
    assert!(value(&text, "keel_host_cpu_busy_ratio").is_some(), "{text}");
}
