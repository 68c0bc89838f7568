//! What the clients send and how: the workload names and the load shape
//! (closed loop of N clients, or open loop at a fixed rate).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::BenchError;

/// Longest run accepted, in seconds (an hour): a typo should not book the
/// machine for a day.
pub const DURATION_S_MAX: u64 = 3_600;
/// Most concurrent clients (tasks and connections) a run may use.
pub const CLIENTS_MAX: u64 = 4_096;
/// Warm-up before measurement, as a fraction (1 / this) of the duration:
/// connections opened, caches and batches warm.
pub const WARMUP_DIVISOR: u32 = 10;

/// A workload of `keel bench run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// One-line orders spread over many SKUs.
    Uniform,
    /// Every buyer on one SKU with limited stock: orders until it sells
    /// out, then `out_of_stock` refusals (answers, not errors).
    FlashSale,
    /// Place an order, then pay it (one operation = two requests).
    Checkout,
    /// Orders mixed with linearizable and local product reads.
    Mixed,
    /// Orders sent through `/v1/batch`, many per request.
    Batch,
}

impl Workload {
    /// Every workload, in the order they are listed to users.
    pub const ALL: [Workload; 5] = [
        Workload::Uniform,
        Workload::FlashSale,
        Workload::Checkout,
        Workload::Mixed,
        Workload::Batch,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Uniform => "uniform",
            Workload::FlashSale => "flash-sale",
            Workload::Checkout => "checkout",
            Workload::Mixed => "mixed",
            Workload::Batch => "batch",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                BenchError::Arg(format!(
                    "unknown workload {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Each client sends its next request when the previous answer came.
    Closed,
    /// Requests are due at a fixed rate over the clients; latency counts
    /// from when each was due.
    Open {
        /// Requests per second, all clients together.
        rate_per_s: u64,
    },
}

/// The shape of one load run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSpec {
    /// Concurrent clients (open loop: connections sharing the rate).
    pub clients: u64,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Closed or open loop.
    pub mode: LoadMode,
}

impl LoadSpec {
    /// A checked spec: 1 to [`CLIENTS_MAX`] clients, 1 to
    /// [`DURATION_S_MAX`] s, and a rate of at least 1/s when given.
    pub fn new(clients: u64, duration_s: u64, rate_per_s: Option<u64>) -> Result<Self, BenchError> {
        if clients == 0 || clients > CLIENTS_MAX {
            return Err(BenchError::Arg(format!(
                "clients must be 1 to {CLIENTS_MAX}, got {clients}"
            )));
        }
        if duration_s == 0 || duration_s > DURATION_S_MAX {
            return Err(BenchError::Arg(format!(
                "duration must be 1 to {DURATION_S_MAX} s, got {duration_s}"
            )));
        }
        let mode = match rate_per_s {
            None => LoadMode::Closed,
            Some(0) => {
                return Err(BenchError::Arg(
                    "rate must be at least 1 request per second".into(),
                ))
            }
            Some(r) => LoadMode::Open { rate_per_s: r },
        };
        let duration = Duration::from_secs(duration_s);
        Ok(Self {
            clients,
            duration,
            warmup: duration / WARMUP_DIVISOR,
            mode,
        })
    }

    /// "closed" or "open N/s", for reports.
    pub fn mode_label(&self) -> String {
        match self.mode {
            LoadMode::Closed => "closed".into(),
            LoadMode::Open { rate_per_s } => format!("open {rate_per_s}/s"),
        }
    }
}

/// Parses a comma-separated list of client counts ("1,16,64").
pub fn parse_counts(s: &str) -> Result<Vec<u64>, BenchError> {
    let counts = s
        .split(',')
        .map(|p| {
            let n: u64 = p
                .trim()
                .parse()
                .map_err(|_| BenchError::Arg(format!("{p:?} is not a number")))?;
            if n == 0 {
                return Err(BenchError::Arg("a count must be at least 1".into()));
            }
            Ok(n)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if counts.is_empty() {
        return Err(BenchError::Arg("no counts given".into()));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_round_trips_its_name() {
        for w in Workload::ALL {
            assert_eq!(w.name().parse::<Workload>().unwrap(), w);
        }
    }

    #[test]
    fn bad_workload_name_lists_the_good_ones() {
        let e = "flashsale".parse::<Workload>().unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, BenchError::Arg(_)));
        assert!(
            msg.contains("flash-sale") && msg.contains("uniform"),
            "{msg}"
        );
    }

    #[test]
    fn zero_clients_duration_or_rate_are_refused() {
        assert!(matches!(
            LoadSpec::new(0, 10, None),
            Err(BenchError::Arg(_))
        ));
        assert!(matches!(
            LoadSpec::new(CLIENTS_MAX + 1, 10, None),
            Err(BenchError::Arg(_))
        ));
        assert!(matches!(LoadSpec::new(1, 0, None), Err(BenchError::Arg(_))));
        let e = LoadSpec::new(4, 10, Some(0)).unwrap_err();
        assert!(e.to_string().contains("rate"), "{e}");
    }

    #[test]
    fn spec_has_a_tenth_of_warm_up_and_the_mode() {
        let s = LoadSpec::new(8, 10, Some(500)).unwrap();
        assert_eq!(s.warmup, Duration::from_secs(1));
        assert_eq!(s.mode, LoadMode::Open { rate_per_s: 500 });
        assert_eq!(s.mode_label(), "open 500/s");
        assert_eq!(LoadSpec::new(1, 1, None).unwrap().mode, LoadMode::Closed);
    }

    #[test]
    fn client_counts_parse_and_refuse_zero() {
        assert_eq!(parse_counts("1, 16,64").unwrap(), vec![1, 16, 64]);
        assert!(parse_counts("1,0").is_err());
        assert!(parse_counts("x").is_err());
        assert!(parse_counts("").is_err());
    }
}
