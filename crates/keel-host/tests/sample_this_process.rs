//! Samples the test process itself through the real `/proc`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use keel_host::{HostSample, HostSampler};

/// The longest wait for the host's CPU tick counters to move (they
/// advance every 10 ms or so, on every CPU).
const TICK_WAIT: Duration = Duration::from_secs(5);

/// A first sample, and a later one taken once the host's CPU counters have
/// moved so its ratios exist.
fn two_samples(dir: &std::path::Path) -> (HostSample, HostSample) {
    let mut sampler = HostSampler::new(Some(dir.to_owned()));
    let first = sampler.sample();
    assert!(sampler.errors().is_empty(), "{:?}", sampler.errors());
    let deadline = Instant::now() + TICK_WAIT;
    loop {
        let second = sampler.sample();
        assert!(sampler.errors().is_empty(), "{:?}", sampler.errors());
        if second.host_cpu_busy_ratio.is_some() || Instant::now() > deadline {
            return (first, second);
        }
    }
}

#[test]
fn the_test_process_has_plausible_values() {
    let dir = tempfile::tempdir().unwrap();
    let (first, s) = two_samples(dir.path());

    assert!(s.process_resident_memory_bytes.unwrap() > 0);
    assert!(
        s.process_open_fds.unwrap() >= 3,
        "stdin, stdout and stderr at least"
    );
    if let Some(max) = s.process_max_fds {
        assert!(max >= s.process_open_fds.unwrap());
    }
    assert!(s.process_cpu_seconds.unwrap() >= first.process_cpu_seconds.unwrap());
    assert!(s.process_uptime_seconds.unwrap() >= 0.0);

    let total = s.host_memory_total_bytes.unwrap();
    let available = s.host_memory_available_bytes.unwrap();
    assert!(total > available && available > 0, "{total} {available}");
    assert!(s.host_load1.unwrap() >= 0.0);

    assert!(s.data_dir_free_bytes.unwrap() > 0);
    assert!(s.data_dir_size_bytes.unwrap() >= s.data_dir_used_bytes.unwrap());
}

#[test]
fn ratios_need_two_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = two_samples(dir.path());
    assert_eq!(first.host_cpu_busy_ratio, None);
    assert_eq!(first.process_cpu_cores, None);
    let ratio = second.host_cpu_busy_ratio.unwrap();
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    assert!(second.process_cpu_cores.unwrap() >= 0.0);
}

#[test]
fn device_counters_come_as_a_set_or_not_at_all() {
    // Whether the temporary directory is on a block device depends on the
    // machine (tmpfs and overlay have none); either way the four fields agree.
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = two_samples(dir.path());
    let present = [
        s.data_dir_device.is_some(),
        s.data_dir_device_read_bytes.is_some(),
        s.data_dir_device_written_bytes.is_some(),
        s.data_dir_device_io_seconds.is_some(),
    ];
    assert!(
        present.iter().all(|p| *p) || present.iter().all(|p| !*p),
        "{present:?}"
    );
}

#[test]
fn a_tmpfs_data_dir_has_space_but_no_device() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        return; // Nothing to test on a machine without it.
    }
    let mut sampler = HostSampler::new(Some(shm.to_owned()));
    let s = sampler.sample();
    assert!(s.data_dir_size_bytes.is_some());
    assert_eq!(s.data_dir_device, None);
    assert_eq!(s.data_dir_device_read_bytes, None);
    assert_eq!(s.data_dir_device_io_seconds, None);
}

#[test]
fn a_missing_data_dir_is_absent_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("not-there");
    let mut sampler = HostSampler::new(Some(gone));
    let s = sampler.sample();
    assert_eq!(s.data_dir_free_bytes, None);
    assert_eq!(s.data_dir_device, None);
    assert!(
        s.process_resident_memory_bytes.is_some(),
        "the rest is still read"
    );
    assert!(!sampler.errors().is_empty());
}

#[test]
fn a_gateway_without_data_dir_has_no_disk_fields() {
    let s = HostSampler::new(None).sample();
    assert_eq!(s.data_dir_size_bytes, None);
    assert!(s.host_memory_total_bytes.is_some());
}

#[test]
fn the_summary_is_json_with_nulls_for_absent_values() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = two_samples(dir.path());
    let json = serde_json::to_value(first.summary()).unwrap();
    assert!(json["process_resident_memory_bytes"].as_u64().unwrap() > 0);
    assert!(json["data_dir_free_bytes"].as_u64().unwrap() > 0);
    assert!(
        json["host_cpu_busy_ratio"].is_null(),
        "first sample: {json}"
    );
    for key in [
        "host_memory_total_bytes",
        "host_memory_available_bytes",
        "data_dir_used_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_cpu_cores",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
}
