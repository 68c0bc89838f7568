//! What machine a run was taken on, from `/proc`, for the report.

use serde::Serialize;

/// The machine description printed with every comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// CPU model as `/proc/cpuinfo` names it.
    pub cpu_model: String,
    /// Total memory, GiB.
    pub mem_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average when the run started.
    pub load_1m: f64,
}

/// The `model name` of the first CPU in `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))?
        .split_once(':')
        .map(|(_, v)| v.trim().to_owned())
}

/// `MemTotal` in KiB from `/proc/meminfo` text.
pub fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Machine {
    /// This machine, now.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: parse_cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
            mem_gib: parse_mem_total_kib(&read("/proc/meminfo")).unwrap_or(0) as f64 / 1_048_576.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_1m: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
        }
    }

    /// One line for humans.
    pub fn line(&self) -> String {
        format!(
            "{} CPUs ({}), {:.0} GiB RAM, Linux {}, load average {:.2} at start",
            self.cpus, self.cpu_model, self.mem_gib, self.kernel, self.load_1m
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let cpu = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: x\n";
        assert_eq!(
            parse_cpu_model(cpu).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(
            parse_mem_total_kib("MemTotal:       24000000 kB\n"),
            Some(24_000_000)
        );
        assert_eq!(parse_cpu_model(""), None);
    }
}
