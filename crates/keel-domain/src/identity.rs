//! Who may act: roles, API keys and the audit trail, as the replicated
//! state holds them. Keys are stored hashed (a key's secret never enters
//! the log); a key's role is read from the state when a command applies,
//! so a revoked or expired key is refused by every replica from the entry
//! that revoked it (or the first entry past its expiry) on.

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, KeyId};

/// Most API keys the state holds at once (live and expired; a revoked key
/// is removed). Creating one more is refused until one is revoked.
pub const KEYS_MAX: u64 = 10_000;
/// Longest key name, in characters.
pub const KEY_NAME_LEN_MAX: usize = 100;
/// Longest lifetime a key may be given (5 years).
pub const KEY_TTL_MAX_S: u64 = 5 * 365 * 24 * 3600;
/// Audit records kept; the oldest is dropped as each new one is written.
pub const AUDIT_RECORDS_MAX: u64 = 100_000;
/// Lifetime of a customer token when the issuer does not say (30 days).
pub const CUSTOMER_TOKEN_TTL_DEFAULT_S: u32 = 30 * 24 * 3600;
/// Longest lifetime of a customer token (365 days).
pub const CUSTOMER_TOKEN_TTL_MAX_S: u32 = 365 * 24 * 3600;
/// Longest free-text field of an audit record (action, detail).
pub const AUDIT_TEXT_LEN_MAX: usize = 300;

/// What a caller may do. Each API route names the roles it accepts
/// (`keel-node`'s route table); the state machine checks the roles of
/// every write again ([`crate::Command::writers`]), from the replicated
/// key, when it applies.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Membership, backups, compaction, gateway weights; reads operations.
    Operator,
    /// Reads everything, changes nothing.
    Support,
    /// The catalogue and its stock.
    Merchant,
    /// Its own account and orders (the key names the account).
    Customer,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Support,
        Role::Merchant,
        Role::Customer,
    ];

    /// The role's name in the API and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Support => "support",
            Role::Merchant => "merchant",
            Role::Customer => "customer",
        }
    }

    /// The role named `s`, if any.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// An API key as the state stores it: what the API shows of it and the
/// hash of its secret, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Everything but the hash.
    pub info: KeyInfo,
    /// [`secret_hash`] of the key's secret.
    pub secret_hash: [u8; 32],
}

/// An API key as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// The key's id (the public half of the token).
    pub id: KeyId,
    /// What the key is for, for humans.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// For the `customer` role: the one account it acts for.
    pub account: Option<AccountId>,
    /// Leader time it was created at (ms).
    pub created_at_ms: u64,
    /// State time from which it is refused (ms), if it expires.
    pub expires_at_ms: Option<u64>,
    /// Who created it (an audit actor).
    pub created_by: String,
}

impl KeyInfo {
    /// True when the state clock `now_ms` has reached the key's expiry.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|e| now_ms >= e)
    }
}

/// The stored hash of a key's secret: a keyed-derivation hash, so the
/// state (and every snapshot and backup of it) never holds a usable key.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    let key = blake3::derive_key("keel api key secret v1", secret.as_bytes());
    *blake3::hash(&key).as_bytes()
}

/// One administrative action, as the replicated audit trail records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Position in the trail: dense and increasing from 1.
    pub seq: u64,
    /// State time of the entry that recorded it (ms).
    pub at_ms: u64,
    /// Who: `admin-token`, `key:<id>` or `cert:<id>`.
    pub actor: String,
    /// The actor's role.
    pub role: Role,
    /// What: the command's or the operation's name.
    pub action: String,
    /// On what, with the parameters that matter.
    pub detail: String,
    /// From where: the caller's address as the node saw it.
    pub origin: String,
    /// `ok`, or the refusal's problem type.
    pub outcome: String,
}
