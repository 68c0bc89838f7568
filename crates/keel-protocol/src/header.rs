//! Names of the HTTP headers Keel's processes send each other, and the
//! form of the leader hint.
//!
//! Every name is lower case, as HTTP/1.1 and HTTP/2 compare names without
//! case and `http::HeaderName::from_static` accepts only lower case.

// ----- the public API, between clients, the gateway and nodes -----------------

/// Request header carrying a write's idempotency key: the same key and body
/// sent again returns the stored result instead of taking effect again.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Response header set (to `true`) on a result replayed for a key already
/// seen.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// Response header with the answering replica's applied index on a local
/// read.
pub const APPLIED_INDEX: &str = "keel-applied-index";
/// Response header naming the leader as the answering node knows it, in the
/// form [`leader_hint`] writes, on every response: a balancer learns of a
/// new leader from any reply without polling.
pub const LEADER: &str = "keel-leader";
/// Response header with the term of the leader named in [`LEADER`]: a
/// cut-off old leader still names itself, at an older term, so a balancer
/// keeps the hint of the highest term.
pub const TERM: &str = "keel-term";
/// Response header the gateway adds naming the node that answered.
pub const UPSTREAM: &str = "keel-upstream";
/// Response header the gateway adds counting the attempts a request took.
pub const ATTEMPTS: &str = "keel-attempts";

// ----- between nodes ----------------------------------------------------------

/// Request header carrying the shared cluster secret on every internal
/// call; a node refuses an internal call without the right one.
pub const CLUSTER_SECRET: &str = "keel-cluster-secret";

/// Request header naming the member an internal call comes from; over TLS
/// the caller's certificate must name the same member.
pub const MEMBER: &str = "keel-member";

// ----- a node's backup endpoints, read by the backup tool --------------------

/// The log index an exported state or a log page ends at.
pub const BACKUP_INDEX: &str = "keel-backup-index";
/// The term of that log id.
pub const BACKUP_TERM: &str = "keel-backup-term";
/// The leader node of that log id.
pub const BACKUP_LEADER_NODE: &str = "keel-backup-leader-node";
/// The state digest (hex) at that index.
pub const STATE_DIGEST: &str = "keel-state-digest";
/// The state's clock (latest leader time applied), ms since the epoch.
pub const BACKUP_CLOCK_MS: &str = "keel-backup-clock-ms";
/// The node's applied index when a log page was read.
pub const BACKUP_APPLIED: &str = "keel-backup-applied";
/// The node's purge point (last index no longer in its log).
pub const BACKUP_PURGED: &str = "keel-backup-purged";

// ----- the leader hint ----------------------------------------------------------

/// The value of a [`LEADER`] header: the leader's node id and the address
/// its public API listens on, `id=host:port`.
pub fn leader_hint(id: u64, addr: &str) -> String {
    format!("{id}={addr}")
}

/// The address part of a leader hint [`leader_hint`] wrote, or `None` for a
/// value not of that form.
pub fn leader_hint_addr(hint: &str) -> Option<&str> {
    hint.split_once('=').map(|(_, addr)| addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 16] = [
        IDEMPOTENCY_KEY,
        IDEMPOTENT_REPLAYED,
        APPLIED_INDEX,
        LEADER,
        TERM,
        UPSTREAM,
        ATTEMPTS,
        CLUSTER_SECRET,
        MEMBER,
        BACKUP_INDEX,
        BACKUP_TERM,
        BACKUP_LEADER_NODE,
        STATE_DIGEST,
        BACKUP_CLOCK_MS,
        BACKUP_APPLIED,
        BACKUP_PURGED,
    ];

    #[test]
    fn every_name_is_a_lower_case_token_and_names_one_header() {
        for name in ALL {
            assert!(!name.is_empty());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name} would be refused by HeaderName::from_static"
            );
        }
        let mut names = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "two constants name one header");
    }

    #[test]
    fn a_leader_hint_gives_back_its_address() {
        let hint = leader_hint(3, "127.0.0.1:7103");
        assert_eq!(hint, "3=127.0.0.1:7103");
        assert_eq!(leader_hint_addr(&hint), Some("127.0.0.1:7103"));
        assert_eq!(leader_hint_addr("127.0.0.1:7103"), None);
    }
}
