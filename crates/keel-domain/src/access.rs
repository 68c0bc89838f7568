//! Access inside the state machine: who a principal is at this log position
//! (its role from the replicated keys and token generations), whether that
//! role may apply a command, and the writes of the identity commands and of
//! the audit trail. Like the rest of `apply`, everything here is a pure
//! function of the tables and the entry's clock.

use crate::codec::encode;
use crate::command::{Command, Principal};
use crate::error::{DomainError, TableError};
use crate::identity::{
    ApiKey, AuditRecord, KeyInfo, Role, AUDIT_RECORDS_MAX, CUSTOMER_TOKEN_TTL_DEFAULT_S, KEYS_MAX,
};
use crate::ids::{AccountId, KeyId};
use crate::keys;
use crate::model::{Account, AccountKind};
use crate::step::{get, ovf, Fail, Step};
use crate::tables::{ReadTables, Table, WriteTables};

/// A principal as the state knows it when its command applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Actor {
    /// Staff: the admin token or a key of a staff role.
    Staff {
        /// The role.
        role: Role,
        /// The audit trail's name for it.
        name: String,
    },
    /// A customer, by token or by a key of the `customer` role.
    Customer(AccountId),
    /// The cluster itself.
    System,
}

fn unauthorized(reason: String) -> Fail {
    Fail::Domain(DomainError::Unauthorized { reason })
}

/// The actor `p` stands for at state time `now`: refused when its key is
/// gone or expired, or its customer token's generation was revoked.
pub(crate) fn resolve<T: ReadTables>(t: &T, p: &Principal, now: u64) -> Step<Actor> {
    match p {
        Principal::Admin => Ok(Actor::Staff {
            role: Role::Admin,
            name: "admin-token".into(),
        }),
        Principal::System => Ok(Actor::System),
        Principal::Customer {
            account,
            generation,
        } => {
            let current = token_generation(t, account)?;
            if *generation != current {
                return Err(unauthorized(format!(
                    "the tokens of {account} were revoked; ask for a new one"
                )));
            }
            Ok(Actor::Customer(account.clone()))
        }
        Principal::Key(id) => {
            let key: ApiKey = get(t, Table::ApiKeys, id.as_str().as_bytes())?
                .ok_or_else(|| unauthorized(format!("key {id} does not exist or was revoked")))?;
            if key.info.expired_at(now) {
                return Err(unauthorized(format!("key {id} has expired")));
            }
            match (key.info.role, key.info.account) {
                (Role::Customer, Some(account)) => Ok(Actor::Customer(account)),
                // A customer key is created with its account (checked by
                // `create_key`); one without is corrupt state, refused.
                (Role::Customer, None) => Err(unauthorized(format!(
                    "key {id} has the customer role but no account"
                ))),
                (role, _) => Ok(Actor::Staff {
                    role,
                    name: format!("key:{id}"),
                }),
            }
        }
    }
}

/// Ok when `actor` may apply `command` at all; ownership of the account or
/// order a customer names is checked by the handler ([`owns`]).
pub(crate) fn authorize(actor: &Actor, command: &Command) -> Step<()> {
    let allowed = match actor {
        Actor::System => matches!(command, Command::ExpireDue { .. }),
        Actor::Staff { role, .. } => command.writers().contains(role),
        Actor::Customer(_) => command.owner_may(),
    };
    if allowed {
        return Ok(());
    }
    let roles: Vec<&str> = command.writers().iter().map(|r| r.as_str()).collect();
    let reason = match command {
        Command::ExpireDue { .. } => "expire_due is proposed by the cluster".to_owned(),
        c => format!("{} needs the {} role", c.name(), roles.join(" or ")),
    };
    Err(DomainError::Forbidden { reason }.into())
}

/// Ok for staff (whose role passed [`authorize`]) and for the customer
/// `owner`; refused for any other customer.
pub(crate) fn owns(actor: &Actor, owner: &AccountId) -> Step<()> {
    match actor {
        Actor::Staff { .. } => Ok(()),
        Actor::Customer(c) if c == owner => Ok(()),
        _ => Err(DomainError::Forbidden {
            reason: format!("only {owner} or an admin may do this"),
        }
        .into()),
    }
}

fn meta_u64<T: ReadTables>(t: &T, key: &[u8]) -> Result<u64, TableError> {
    Ok(get(t, Table::Meta, key)?.unwrap_or(0))
}

/// The token generation of `account`: 0 until its tokens are first revoked.
pub fn token_generation<T: ReadTables>(t: &T, account: &AccountId) -> Result<u32, TableError> {
    Ok(get(t, Table::CustomerTokens, account.as_str().as_bytes())?.unwrap_or(0))
}

fn customer_account<T: ReadTables>(t: &T, id: &AccountId) -> Step<Account> {
    let a: Account = get(t, Table::Accounts, id.as_str().as_bytes())?
        .ok_or_else(|| DomainError::not_found("account", id))?;
    if a.kind != AccountKind::Customer {
        return Err(DomainError::validation(
            "account",
            format!("{id} is a {} account, not a customer's", a.kind.as_str()),
        )
        .into());
    }
    Ok(a)
}

/// The fields of a `CreateKey`.
pub(crate) struct NewKey<'c> {
    pub id: &'c KeyId,
    pub name: &'c str,
    pub role: Role,
    pub account: Option<&'c AccountId>,
    pub secret_hash: [u8; 32],
    pub ttl_seconds: Option<u64>,
}

/// Stores a new key; refused when the id is taken, the role and account do
/// not fit, or [`KEYS_MAX`] keys are held.
pub(crate) fn create_key<T: WriteTables>(
    t: &mut T,
    k: NewKey<'_>,
    created_by: &str,
    now: u64,
    deadline_base: u64,
) -> Step<KeyInfo> {
    if t.get(Table::ApiKeys, k.id.as_str().as_bytes())?.is_some() {
        return Err(DomainError::AlreadyExists {
            entity: "key".into(),
            id: k.id.to_string(),
        }
        .into());
    }
    match (k.role, k.account) {
        (Role::Customer, Some(a)) => {
            customer_account(t, a)?;
        }
        (Role::Customer, None) => {
            return Err(
                DomainError::validation("account", "a customer key names its account").into(),
            )
        }
        (_, Some(_)) => {
            return Err(
                DomainError::validation("account", "only a customer key names an account").into(),
            )
        }
        (_, None) => {}
    }
    let count = meta_u64(t, keys::META_KEY_COUNT)?;
    if count >= KEYS_MAX {
        return Err(DomainError::validation(
            "id",
            format!("{KEYS_MAX} keys are held; revoke one first"),
        )
        .into());
    }
    let expires_at_ms = match k.ttl_seconds {
        None => None,
        Some(s) => Some(
            s.checked_mul(1000)
                .and_then(|ms| deadline_base.checked_add(ms))
                .ok_or_else(|| ovf("expires_at_ms"))?,
        ),
    };
    let key = ApiKey {
        info: KeyInfo {
            id: k.id.clone(),
            name: k.name.to_owned(),
            role: k.role,
            account: k.account.cloned(),
            created_at_ms: now,
            expires_at_ms,
            created_by: created_by.to_owned(),
        },
        secret_hash: k.secret_hash,
    };
    t.put(Table::ApiKeys, k.id.as_str().as_bytes(), &encode(&key))?;
    t.put(Table::Meta, keys::META_KEY_COUNT, &encode(&(count + 1)))?;
    Ok(key.info)
}

/// Removes a key: from this entry on, every replica refuses it.
pub(crate) fn revoke_key<T: WriteTables>(t: &mut T, id: &KeyId) -> Step<KeyInfo> {
    let key: ApiKey = get(t, Table::ApiKeys, id.as_str().as_bytes())?
        .ok_or_else(|| DomainError::not_found("key", id))?;
    let count = meta_u64(t, keys::META_KEY_COUNT)?;
    t.delete(Table::ApiKeys, id.as_str().as_bytes())?;
    t.put(
        Table::Meta,
        keys::META_KEY_COUNT,
        &encode(&count.saturating_sub(1)),
    )?;
    Ok(key.info)
}

/// What a customer token of `account` issued now carries: the account's
/// token generation and the state time it expires at. Counted from the
/// deadline base, so a token never expires before its lifetime has passed.
pub(crate) fn issue_token<T: ReadTables>(
    t: &T,
    account: &AccountId,
    ttl_seconds: Option<u32>,
    deadline_base: u64,
) -> Step<(u32, u64)> {
    customer_account(t, account)?;
    let ttl_ms = u64::from(ttl_seconds.unwrap_or(CUSTOMER_TOKEN_TTL_DEFAULT_S)) * 1000;
    let expires_at_ms = deadline_base
        .checked_add(ttl_ms)
        .ok_or_else(|| ovf("expires_at_ms"))?;
    Ok((token_generation(t, account)?, expires_at_ms))
}

/// Moves `account` to its next token generation: every token issued before
/// is refused from this entry on. Returns the new generation.
pub(crate) fn revoke_tokens<T: WriteTables>(t: &mut T, account: &AccountId) -> Step<u32> {
    customer_account(t, account)?;
    let next = token_generation(t, account)?
        .checked_add(1)
        .ok_or_else(|| ovf("token generation"))?;
    t.put(
        Table::CustomerTokens,
        account.as_str().as_bytes(),
        &encode(&next),
    )?;
    Ok(next)
}

/// An audit record before its sequence number is known.
pub(crate) struct AuditEntry<'e> {
    pub at_ms: u64,
    pub actor: &'e str,
    pub role: Role,
    pub action: String,
    pub detail: String,
    pub origin: &'e str,
    pub outcome: &'e str,
}

/// Appends to the audit trail and drops the record [`AUDIT_RECORDS_MAX`]
/// behind it, so the trail stays bounded at the same position on every
/// replica.
pub(crate) fn append_audit<T: WriteTables>(t: &mut T, e: AuditEntry<'_>) -> Result<(), TableError> {
    let seq = meta_u64(t, keys::META_AUDIT_NEXT)?.max(1);
    let rec = AuditRecord {
        seq,
        at_ms: e.at_ms,
        actor: e.actor.to_owned(),
        role: e.role,
        action: e.action,
        detail: e.detail,
        origin: e.origin.to_owned(),
        outcome: e.outcome.to_owned(),
    };
    t.put(Table::Audit, &keys::audit(seq), &encode(&rec))?;
    if let Some(old) = seq.checked_sub(AUDIT_RECORDS_MAX) {
        t.delete(Table::Audit, &keys::audit(old))?;
    }
    t.put(Table::Meta, keys::META_AUDIT_NEXT, &encode(&(seq + 1)))
}
