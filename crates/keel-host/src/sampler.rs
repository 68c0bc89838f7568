//! Taking a [`HostSample`]: one reading of every source, each allowed to fail alone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::disk;
use crate::error::ParseError;
use crate::error::ReadError;
use crate::parse::{self, CpuTimes};
use crate::read::{count_fds, proc_text};

/// Where the kernel's files are.
const PROC_ROOT: &str = "/proc";

/// The path of `name` under [`PROC_ROOT`].
fn proc_path(name: &str) -> PathBuf {
    Path::new(PROC_ROOT).join(name)
}

/// One reading of the process and the host.
///
/// A field is `None` when this machine could not give it (a file absent
/// from this kernel, a permission refused, a data directory on tmpfs with
/// no block device, the first sample of a ratio that needs two): never a
/// zero standing in for "unknown". Counters (`…_seconds`, `…_bytes` read
/// or written) only grow while the process or the device lives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSample {
    /// CPU time of this process, user plus system, in seconds.
    pub process_cpu_seconds: Option<f64>,
    /// CPU this process used since the previous sample, in cores (1.0 is
    /// one core fully busy); `None` on the first sample.
    pub process_cpu_cores: Option<f64>,
    /// Resident set size of this process, in bytes.
    pub process_resident_memory_bytes: Option<u64>,
    /// File descriptors this process has open.
    pub process_open_fds: Option<u64>,
    /// Soft limit on open file descriptors; `None` when unlimited or unreadable.
    pub process_max_fds: Option<u64>,
    /// Bytes this process caused to be read from storage (`/proc/self/io`).
    pub process_read_bytes: Option<u64>,
    /// Bytes this process caused to be written to storage (`/proc/self/io`).
    pub process_written_bytes: Option<u64>,
    /// Seconds since this process started.
    pub process_uptime_seconds: Option<f64>,
    /// Share of the host's CPU time spent busy since the previous sample,
    /// in `[0, 1]`; `None` on the first sample.
    pub host_cpu_busy_ratio: Option<f64>,
    /// The host's usable RAM, in bytes.
    pub host_memory_total_bytes: Option<u64>,
    /// RAM the kernel estimates can be allocated without swapping, in bytes.
    pub host_memory_available_bytes: Option<u64>,
    /// Run-queue average over one minute.
    pub host_load1: Option<f64>,
    /// Run-queue average over five minutes.
    pub host_load5: Option<f64>,
    /// Run-queue average over fifteen minutes.
    pub host_load15: Option<f64>,
    /// Size of the data directory's filesystem, in bytes.
    pub data_dir_size_bytes: Option<u64>,
    /// Free space there for an unprivileged process, in bytes.
    pub data_dir_free_bytes: Option<u64>,
    /// Used space there, in bytes.
    pub data_dir_used_bytes: Option<u64>,
    /// The kernel's name of the block device under the data directory.
    pub data_dir_device: Option<String>,
    /// Bytes read from that device since boot.
    pub data_dir_device_read_bytes: Option<u64>,
    /// Bytes written to that device since boot.
    pub data_dir_device_written_bytes: Option<u64>,
    /// Seconds that device has had I/O in flight since boot.
    pub data_dir_device_io_seconds: Option<f64>,
}

/// Takes [`HostSample`]s of this process, the host and a data directory.
///
/// It keeps the previous CPU readings, since a busy share is a difference
/// between two. Sampling reads about ten small files; call it at scrape
/// time or on a timer, from one place.
#[derive(Debug)]
pub struct HostSampler {
    data_dir: Option<PathBuf>,
    clock_ticks_per_second: u64,
    previous_host_cpu: Option<CpuTimes>,
    previous_process_cpu: Option<(Instant, f64)>,
    errors: Vec<ReadError>,
}

impl HostSampler {
    /// A sampler of this process and host, and of the filesystem and
    /// device of `data_dir` when given (a gateway has none).
    pub fn new(data_dir: Option<PathBuf>) -> Self {
        Self {
            data_dir,
            // sysconf(_SC_CLK_TCK), which the kernel passes in the aux vector.
            clock_ticks_per_second: rustix::param::clock_ticks_per_second(),
            previous_host_cpu: None,
            previous_process_cpu: None,
            errors: Vec::new(),
        }
    }

    /// Reads every source once. A source that fails leaves its fields
    /// `None` and its error in [`HostSampler::errors`].
    pub fn sample(&mut self) -> HostSample {
        self.errors.clear();
        let mut s = HostSample::default();
        self.sample_process(&mut s);
        self.sample_host(&mut s);
        if let Some(dir) = self.data_dir.clone() {
            self.sample_data_dir(&dir, &mut s);
        }
        s
    }

    /// Why sources failed in the latest [`HostSampler::sample`], one error
    /// per source at most, for the caller to log: the sample only shows
    /// that a field is missing. A data directory with no block device
    /// under it is not an error.
    pub fn errors(&self) -> &[ReadError] {
        &self.errors
    }

    /// Keeps `result`'s error, if any, and returns its value.
    fn note<T>(&mut self, result: Result<T, ReadError>) -> Option<T> {
        result.map_err(|e| self.errors.push(e)).ok()
    }

    /// Reads `/proc/<name>` and parses it.
    fn read<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Option<T> {
        let path = proc_path(name);
        let parsed = proc_text(&path)
            .and_then(|text| parse(&text).map_err(|source| ReadError::Parse { path, source }));
        self.note(parsed)
    }

    /// Converts clock ticks to seconds.
    fn ticks_to_seconds(&self, ticks: u64) -> Option<f64> {
        (self.clock_ticks_per_second > 0).then(|| ticks as f64 / self.clock_ticks_per_second as f64)
    }

    fn sample_process(&mut self, s: &mut HostSample) {
        if let Some(stat) = self.read("self/stat", parse::parse_self_stat) {
            let cpu = self.ticks_to_seconds(stat.user_ticks.saturating_add(stat.system_ticks));
            s.process_cpu_seconds = cpu;
            s.process_cpu_cores = cpu.and_then(|c| self.process_cores(c));
            let started = self.ticks_to_seconds(stat.start_ticks);
            let boot = self.read("uptime", parse::parse_uptime_seconds);
            s.process_uptime_seconds = started.zip(boot).map(|(st, up)| (up - st).max(0.0));
        }
        s.process_resident_memory_bytes = self.read("self/status", parse::parse_status_rss_bytes);
        s.process_open_fds = self.note(count_fds(&proc_path("self/fd")));
        s.process_max_fds = self
            .read("self/limits", parse::parse_max_open_files)
            .flatten();
        if let Some(io) = self.read("self/io", parse::parse_self_io) {
            s.process_read_bytes = Some(io.read_bytes);
            s.process_written_bytes = Some(io.written_bytes);
        }
    }

    /// Cores used since the previous reading of `cpu_seconds`, and keeps this one.
    fn process_cores(&mut self, cpu_seconds: f64) -> Option<f64> {
        let now = Instant::now();
        let previous = self.previous_process_cpu.replace((now, cpu_seconds));
        let (then, before) = previous?;
        let wall = now.duration_since(then).as_secs_f64();
        (wall > 0.0 && cpu_seconds >= before).then(|| (cpu_seconds - before) / wall)
    }

    fn sample_host(&mut self, s: &mut HostSample) {
        if let Some(now) = self.read("stat", parse::parse_cpu_times) {
            let before = self.previous_host_cpu.replace(now);
            s.host_cpu_busy_ratio = before.and_then(|b| parse::busy_ratio(b, now));
        }
        if let Some(mem) = self.read("meminfo", parse::parse_meminfo) {
            s.host_memory_total_bytes = Some(mem.total_bytes);
            s.host_memory_available_bytes = mem.available_bytes;
        }
        if let Some(load) = self.read("loadavg", parse::parse_loadavg) {
            s.host_load1 = Some(load.one);
            s.host_load5 = Some(load.five);
            s.host_load15 = Some(load.fifteen);
        }
    }

    fn sample_data_dir(&mut self, dir: &Path, s: &mut HostSample) {
        if let Some(space) = self.note(disk::space(dir)) {
            s.data_dir_size_bytes = Some(space.size_bytes);
            s.data_dir_free_bytes = Some(space.free_bytes);
            s.data_dir_used_bytes = Some(space.used_bytes);
        }
        let device = self
            .note(disk::device_of(dir, &proc_path("self/mountinfo")))
            .flatten();
        let Some(device) = device else { return };
        let Some(counters) = self
            .read("diskstats", |t| parse::parse_diskstats(t, device))
            .flatten()
        else {
            return;
        };
        s.data_dir_device = Some(counters.name);
        s.data_dir_device_read_bytes = Some(counters.read_bytes);
        s.data_dir_device_written_bytes = Some(counters.written_bytes);
        s.data_dir_device_io_seconds = Some(counters.io_ms as f64 / MS_PER_SECOND);
    }
}

/// Milliseconds in a second, for diskstats' I/O time.
const MS_PER_SECOND: f64 = 1000.0;
