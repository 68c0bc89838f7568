//! Pure parsers of the texts the kernel writes under `/proc`.
//!
//! Each takes the text and returns what it means or a [`ParseError`]; none
//! reads a file or panics, whatever the text. Layouts are those of
//! `proc(5)` and the kernel's `Documentation/admin-guide/iostats.rst`.

use crate::error::{not_a_number, nth, number, ParseError};

/// Bytes of the unit `/proc` calls `kB` (it means KiB).
const KIB_BYTES: u64 = 1024;

/// Bytes in the unit `/proc/diskstats` counts sectors in: always 512,
/// whatever the device's real sector size (see iostats.rst).
const DISKSTATS_SECTOR_BYTES: u64 = 512;

/// The process's CPU time and start, from `/proc/self/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfStat {
    /// Time spent in user mode (`utime`, field 14).
    pub user_ticks: u64,
    /// Time spent in kernel mode (`stime`, field 15).
    pub system_ticks: u64,
    /// When the process started, after boot (`starttime`, field 22).
    pub start_ticks: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_self_stat(text: &str) -> Result<SelfStat, ParseError> {
    let (_, rest) = text.rsplit_once(')').ok_or(ParseError::Missing("comm"))?;
    // After the name, the first field is field 3 (state).
    let mut fields = rest.split_whitespace();
    // `nth` consumes what it skips: after utime (field 14) and stime (15),
    // starttime (22) is six fields further on.
    let user = nth(&mut fields, 14 - 3, "utime")?;
    let system = nth(&mut fields, 0, "stime")?;
    let start = nth(&mut fields, 22 - 15 - 1, "starttime")?;
    Ok(SelfStat {
        user_ticks: number("utime", user)?,
        system_ticks: number("stime", system)?,
        start_ticks: number("starttime", start)?,
    })
}

/// The value of a `Key:   123 kB` line of `/proc/meminfo` or
/// `/proc/self/status`, in bytes; `None` when no line has that key.
fn kib_line(text: &str, key: &'static str) -> Result<Option<u64>, ParseError> {
    let Some(line) = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
    else {
        return Ok(None);
    };
    let mut fields = line.split_whitespace();
    let kib: u64 = number(key, nth(&mut fields, 0, key)?)?;
    if fields.next() != Some("kB") {
        return Err(ParseError::Missing("kB unit"));
    }
    kib.checked_mul(KIB_BYTES)
        .map(Some)
        .ok_or_else(|| not_a_number(key, &kib.to_string()))
}

/// Parses the resident set size (`VmRSS`) out of `/proc/self/status`, in bytes.
pub fn parse_status_rss_bytes(text: &str) -> Result<u64, ParseError> {
    kib_line(text, "VmRSS")?.ok_or(ParseError::Missing("VmRSS"))
}

/// Host memory from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meminfo {
    /// `MemTotal`: usable RAM.
    pub total_bytes: u64,
    /// `MemAvailable`: the kernel's estimate of what can be allocated
    /// without swapping; absent before Linux 3.14.
    pub available_bytes: Option<u64>,
}

/// Parses `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Result<Meminfo, ParseError> {
    Ok(Meminfo {
        total_bytes: kib_line(text, "MemTotal")?.ok_or(ParseError::Missing("MemTotal"))?,
        available_bytes: kib_line(text, "MemAvailable")?,
    })
}

/// The host's CPU time from the `cpu` line of `/proc/stat`, in clock ticks,
/// summed over all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// All time counted (user, nice, system, idle, iowait, irq, softirq, steal).
    pub total_ticks: u64,
    /// Time not idle and not waiting for I/O.
    pub busy_ticks: u64,
}

/// Columns of the `cpu` line that are summed: user, nice, system, idle,
/// iowait, irq, softirq, steal. The later guest columns are already
/// counted inside user and nice, so adding them would count them twice.
const CPU_COLUMNS_SUMMED: usize = 8;

/// The columns every kernel since 2.4 writes: user, nice, system, idle.
const CPU_COLUMNS_REQUIRED: usize = 4;

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_cpu_times(text: &str) -> Result<CpuTimes, ParseError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .ok_or(ParseError::Missing("cpu line"))?;
    let columns = line
        .split_whitespace()
        .take(CPU_COLUMNS_SUMMED)
        .map(|c| number::<u64>("cpu column", c))
        .collect::<Result<Vec<_>, _>>()?;
    if columns.len() < CPU_COLUMNS_REQUIRED {
        return Err(ParseError::Missing("cpu idle column"));
    }
    // Idle is column 3; iowait (column 4) is idle too, when the kernel has it.
    let idle = columns[3].saturating_add(columns.get(4).copied().unwrap_or(0));
    let total = columns.iter().fold(0u64, |sum, c| sum.saturating_add(*c));
    Ok(CpuTimes {
        total_ticks: total,
        busy_ticks: total.saturating_sub(idle),
    })
}

/// The share of CPU time the host spent busy between two readings, in
/// `[0, 1]`; `None` when no time passed or the counters went backwards
/// (a CPU taken offline drops its ticks from the sum).
pub fn busy_ratio(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total_ticks.checked_sub(before.total_ticks)?;
    let busy = after.busy_ticks.checked_sub(before.busy_ticks)?;
    if total == 0 || busy > total {
        return None;
    }
    Some(busy as f64 / total as f64)
}

/// Parses the soft limit of open files out of `/proc/self/limits`;
/// `Ok(None)` when it is `unlimited`.
pub fn parse_max_open_files(text: &str) -> Result<Option<u64>, ParseError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .ok_or(ParseError::Missing("Max open files"))?;
    match line.split_whitespace().next() {
        None => Err(ParseError::Missing("open files soft limit")),
        Some("unlimited") => Ok(None),
        Some(soft) => number("open files soft limit", soft).map(Some),
    }
}

/// The process's storage I/O from `/proc/self/io`: bytes it caused to be
/// fetched from or sent to the storage layer (not reads served by the page
/// cache, which `rchar` would count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIo {
    /// `read_bytes`.
    pub read_bytes: u64,
    /// `write_bytes`.
    pub written_bytes: u64,
}

/// The value of a `key: 123` line, or a [`ParseError::Missing`] naming it.
fn colon_number(text: &str, key: &'static str) -> Result<u64, ParseError> {
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .ok_or(ParseError::Missing(key))?;
    number(key, value.trim())
}

/// Parses `/proc/self/io`.
pub fn parse_self_io(text: &str) -> Result<ProcessIo, ParseError> {
    Ok(ProcessIo {
        read_bytes: colon_number(text, "read_bytes")?,
        written_bytes: colon_number(text, "write_bytes")?,
    })
}

/// A block device's major and minor numbers, as in `st_dev` and `/proc/diskstats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId {
    /// Major number (the driver).
    pub major: u32,
    /// Minor number (the device or partition).
    pub minor: u32,
}

/// One block device's counters from `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCounters {
    /// The kernel's name of the device, e.g. `nvme0n1p2`.
    pub name: String,
    /// Bytes read (sectors read × 512).
    pub read_bytes: u64,
    /// Bytes written (sectors written × 512).
    pub written_bytes: u64,
    /// Milliseconds the device had I/O in flight (field 10 of iostats.rst).
    pub io_ms: u64,
}

/// Finds `device` in `/proc/diskstats`; `Ok(None)` when it is not listed.
/// Lines of other devices are not parsed beyond their numbers, so one odd
/// line elsewhere does not hide the device asked for.
pub fn parse_diskstats(text: &str, device: DeviceId) -> Result<Option<DiskCounters>, ParseError> {
    let wanted = |l: &&str| {
        let mut f = l.split_whitespace();
        f.next().and_then(|m| m.parse().ok()) == Some(device.major)
            && f.next().and_then(|m| m.parse().ok()) == Some(device.minor)
    };
    text.lines().find(wanted).map(disk_counters).transpose()
}

/// Parses one `/proc/diskstats` line (its major and minor already matched).
fn disk_counters(line: &str) -> Result<DiskCounters, ParseError> {
    let mut f = line.split_whitespace();
    let name = nth(&mut f, 2, "device name")?;
    // Fields after the name, counted from 1 as iostats.rst does.
    let sectors_read: u64 = number("sectors read", nth(&mut f, 2, "sectors read")?)?;
    let sectors_written: u64 = number("sectors written", nth(&mut f, 3, "sectors written")?)?;
    let io_ms = number("io ms", nth(&mut f, 2, "io ms")?)?;
    Ok(DiskCounters {
        name: name.to_owned(),
        read_bytes: sectors_read.saturating_mul(DISKSTATS_SECTOR_BYTES),
        written_bytes: sectors_written.saturating_mul(DISKSTATS_SECTOR_BYTES),
        io_ms,
    })
}

/// Parses a finite, non-negative decimal.
fn non_negative(field: &'static str, text: &str) -> Result<f64, ParseError> {
    let value: f64 = number(field, text)?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(not_a_number(field, text))
    }
}

/// The run-queue averages of `/proc/loadavg`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAverage {
    /// Over one minute.
    pub one: f64,
    /// Over five minutes.
    pub five: f64,
    /// Over fifteen minutes.
    pub fifteen: f64,
}

/// Parses `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<LoadAverage, ParseError> {
    let mut f = text.split_whitespace();
    Ok(LoadAverage {
        one: non_negative("load1", nth(&mut f, 0, "load1")?)?,
        five: non_negative("load5", nth(&mut f, 0, "load5")?)?,
        fifteen: non_negative("load15", nth(&mut f, 0, "load15")?)?,
    })
}

/// Parses the seconds since boot out of `/proc/uptime`.
pub fn parse_uptime_seconds(text: &str) -> Result<f64, ParseError> {
    non_negative("uptime", nth(&mut text.split_whitespace(), 0, "uptime")?)
}

/// The source (`/dev/…` for a block device, `tmpfs` or `overlay` for
/// others) of the mount whose `st_dev` is `device`, from
/// `/proc/self/mountinfo`. The last such mount wins: it is the one on top.
/// Lines that do not have the documented layout are skipped.
pub fn mountinfo_source(text: &str, device: DeviceId) -> Option<&str> {
    let wanted = format!("{}:{}", device.major, device.minor);
    text.lines()
        .rev()
        .filter_map(mount_dev_and_source)
        .find(|(d, _)| *d == wanted)
        .map(|(_, s)| s)
}

/// Field 3 (major:minor) and the source after the ` - fstype` separator of one mountinfo line.
fn mount_dev_and_source(line: &str) -> Option<(&str, &str)> {
    let (mount, fs) = line.split_once(" - ")?;
    let dev = mount.split_whitespace().nth(2)?;
    let source = fs.split_whitespace().nth(1)?;
    Some((dev, source))
}

#[cfg(test)]
mod tests;
