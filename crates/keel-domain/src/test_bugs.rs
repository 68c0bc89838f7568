//! Deliberate bugs, for proving that the chaos suite's checkers catch what
//! they claim to. Compiled in only with the `test-bugs` cargo feature, and
//! even then off until a node is started with `--test-bugs LIST`; a
//! production build has none (`on` is then always false and every bug's
//! branch is dead code).
//!
//! Every replica of a test cluster is started with the same list before it
//! applies anything, so the state machine stays a pure function of the log
//! within that cluster.

/// One deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TestBug {
    /// Places skip the stock check: the hot SKU oversells.
    Oversell,
    /// Log appends are acknowledged to openraft without an fsync: a power
    /// loss that drops unsynced writes loses acknowledged entries.
    AckBeforeFsync,
    /// The idempotency lookup is skipped: a request sent again with the
    /// same key takes effect again.
    SkipIdempotency,
    /// One paid order in [`FREE_PAYMENT_EVERY`] credits the merchant
    /// without debiting the customer: money appears from nowhere.
    FreePayment,
    /// Linearizable reads are served from the replica's own state without
    /// a read index: a follower answers stale reads.
    StaleRead,
    /// A fault injector rather than a bug: the first snapshot chunk this
    /// node sends has one byte flipped, as a damaged link would, so a test
    /// can see the receiver refuse it and fetch it again.
    CorruptSnapshotSend,
    /// The Raft vote is never made durable: the log store keeps it in
    /// memory only (and answers `read_vote` from there while the process
    /// lives), so a restarted node comes back with the vote it had before
    /// this process saved any, and may vote again in a term it already
    /// voted in. A vote merely committed without an fsync would not show
    /// this: redb makes every earlier non-durable commit durable with the
    /// next durable one, so the next log append would save it. Keeping it
    /// out of the database is the faithful form of "a vote the disk never
    /// made durable, lost at power loss"; it is lost at any restart, a
    /// plain kill included.
    VoteUnsynced,
}

/// How rare [`TestBug::FreePayment`] is: one order in this many, by id.
pub const FREE_PAYMENT_EVERY: u64 = 16;

impl TestBug {
    /// Every bug, in a fixed order.
    pub const ALL: [TestBug; 7] = [
        TestBug::Oversell,
        TestBug::AckBeforeFsync,
        TestBug::SkipIdempotency,
        TestBug::FreePayment,
        TestBug::StaleRead,
        TestBug::CorruptSnapshotSend,
        TestBug::VoteUnsynced,
    ];

    /// The name used by `--test-bugs`.
    pub fn name(self) -> &'static str {
        match self {
            TestBug::Oversell => "oversell",
            TestBug::AckBeforeFsync => "ack-before-fsync",
            TestBug::SkipIdempotency => "skip-idempotency",
            TestBug::FreePayment => "free-payment",
            TestBug::StaleRead => "stale-read",
            TestBug::CorruptSnapshotSend => "corrupt-snapshot-send",
            TestBug::VoteUnsynced => "vote-unsynced",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// Parses a comma-separated list of names.
    pub fn parse_list(s: &str) -> Result<Vec<TestBug>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                TestBug::ALL
                    .into_iter()
                    .find(|b| b.name() == p)
                    .ok_or_else(|| {
                        format!(
                            "unknown test bug {p:?}; known: {}",
                            TestBug::ALL.map(TestBug::name).join(", ")
                        )
                    })
            })
            .collect()
    }
}

#[cfg(feature = "test-bugs")]
static ENABLED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Turns `bugs` on for this process; refused by a build without the
/// `test-bugs` feature, so a production binary cannot be made buggy.
pub fn enable(bugs: &[TestBug]) -> Result<(), String> {
    #[cfg(feature = "test-bugs")]
    {
        let bits = bugs.iter().fold(0, |a, b| a | b.bit());
        ENABLED.fetch_or(bits, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    #[cfg(not(feature = "test-bugs"))]
    {
        if bugs.is_empty() {
            return Ok(());
        }
        Err("this build has no deliberate bugs (built without the test-bugs feature)".into())
    }
}

/// Whether `bug` is on in this process.
#[inline]
pub fn on(bug: TestBug) -> bool {
    #[cfg(feature = "test-bugs")]
    {
        ENABLED.load(std::sync::atomic::Ordering::Relaxed) & bug.bit() != 0
    }
    #[cfg(not(feature = "test-bugs"))]
    {
        let _ = bug.bit();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for b in TestBug::ALL {
            assert_eq!(TestBug::parse_list(b.name()).unwrap(), vec![b]);
        }
        assert!(TestBug::parse_list("oversell,nonsense").is_err());
        assert_eq!(TestBug::parse_list("").unwrap(), vec![]);
    }

    #[cfg(not(feature = "test-bugs"))]
    #[test]
    fn a_build_without_the_feature_refuses_every_bug() {
        assert!(enable(&[TestBug::Oversell]).is_err());
        assert!(enable(&[]).is_ok());
        assert!(!on(TestBug::Oversell));
    }
}
