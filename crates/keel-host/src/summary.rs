//! A short JSON view of a [`HostSample`] for a dashboard.

use serde::Serialize;

use crate::HostSample;

/// The few numbers a dashboard shows of a node or gateway, serialised as
/// JSON with these field names. Absent values are `null`, as in the sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSummary {
    /// Host CPU busy share in `[0, 1]` since the previous sample.
    pub host_cpu_busy_ratio: Option<f64>,
    /// Cores this process used since the previous sample.
    pub process_cpu_cores: Option<f64>,
    /// Resident set size of this process, in bytes.
    pub process_resident_memory_bytes: Option<u64>,
    /// The host's usable RAM, in bytes.
    pub host_memory_total_bytes: Option<u64>,
    /// RAM allocatable without swapping, in bytes.
    pub host_memory_available_bytes: Option<u64>,
    /// Free space of the data directory's filesystem, in bytes.
    pub data_dir_free_bytes: Option<u64>,
    /// Used space of the data directory's filesystem, in bytes.
    pub data_dir_used_bytes: Option<u64>,
    /// File descriptors this process has open.
    pub process_open_fds: Option<u64>,
    /// Soft limit on open file descriptors.
    pub process_max_fds: Option<u64>,
}

impl From<&HostSample> for HostSummary {
    fn from(s: &HostSample) -> Self {
        Self {
            host_cpu_busy_ratio: s.host_cpu_busy_ratio,
            process_cpu_cores: s.process_cpu_cores,
            process_resident_memory_bytes: s.process_resident_memory_bytes,
            host_memory_total_bytes: s.host_memory_total_bytes,
            host_memory_available_bytes: s.host_memory_available_bytes,
            data_dir_free_bytes: s.data_dir_free_bytes,
            data_dir_used_bytes: s.data_dir_used_bytes,
            process_open_fds: s.process_open_fds,
            process_max_fds: s.process_max_fds,
        }
    }
}

impl HostSample {
    /// The dashboard's view of this sample.
    pub fn summary(&self) -> HostSummary {
        HostSummary::from(self)
    }
}
