//! Keys, customer tokens and the audit trail: the calls behind `keel admin
//! keys|tokens|audit|whoami`, and the tables they print.

use serde::Deserialize;
use serde_json::{json, Value};

use keel_domain::query::Page;
use keel_domain::{AuditRecord, KeyInfo, Role};

use keel_protocol::clock::utc_text;

use crate::{method_delete, method_get, Client, ClientError};

/// A key as `POST /v1/keys` answers: shown with its token once.
#[derive(Clone, Debug, Deserialize)]
pub struct CreatedKey {
    /// The key.
    pub key: KeyInfo,
    /// Its bearer token; only its hash is stored.
    pub token: String,
}

/// A customer token as `POST /v1/accounts/{id}/token` answers.
#[derive(Clone, Debug, Deserialize)]
pub struct IssuedToken {
    /// The account.
    pub account: String,
    /// Its bearer token.
    pub token: String,
    /// State time it expires at (ms since the Unix epoch).
    pub expires_at_ms: u64,
}

impl Client {
    /// Creates an API key with `role` (and `account` for a customer key),
    /// living `ttl_seconds` if given.
    pub async fn create_key(
        &self,
        name: &str,
        role: Role,
        account: Option<&str>,
        ttl_seconds: Option<u64>,
        key: &str,
    ) -> Result<CreatedKey, ClientError> {
        let body = json!({
            "name": name,
            "role": role.as_str(),
            "account": account,
            "ttl_seconds": ttl_seconds,
        });
        self.post("/v1/keys", &body, key).await?.json()
    }

    /// One page of the keys, from after `cursor`.
    pub async fn keys(&self, cursor: Option<&str>) -> Result<Page<KeyInfo>, ClientError> {
        self.get(&page_path("/v1/keys", cursor, None)).await?.json()
    }

    /// Revokes the key `id`.
    pub async fn revoke_key(&self, id: &str, key: &str) -> Result<KeyInfo, ClientError> {
        self.call(method_delete(), &format!("/v1/keys/{id}"), None, Some(key))
            .await?
            .json()
    }

    /// Issues a customer token for `account`.
    pub async fn issue_token(
        &self,
        account: &str,
        ttl_seconds: Option<u32>,
        key: &str,
    ) -> Result<IssuedToken, ClientError> {
        let path = match ttl_seconds {
            Some(t) => format!("/v1/accounts/{account}/token?ttl_seconds={t}"),
            None => format!("/v1/accounts/{account}/token"),
        };
        self.post(&path, &json!({}), key).await?.json()
    }

    /// Revokes every token of `account`; returns its new token generation.
    pub async fn revoke_tokens(&self, account: &str, key: &str) -> Result<u64, ClientError> {
        let r = self
            .call(
                method_delete(),
                &format!("/v1/accounts/{account}/token"),
                None,
                Some(key),
            )
            .await?;
        r.body["generation"]
            .as_u64()
            .ok_or_else(|| ClientError::Problem {
                status: r.status,
                kind: "unexpected".into(),
                detail: "the answer names no generation".into(),
                body: r.body.clone(),
            })
    }

    /// Up to `limit` audit records, newest first, from before `cursor`.
    pub async fn audit(
        &self,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<AuditRecord>, ClientError> {
        self.get(&page_path("/v1/audit", cursor, limit))
            .await?
            .json()
    }

    /// Who this client's credential stands for.
    pub async fn whoami(&self) -> Result<Value, ClientError> {
        Ok(self
            .call(method_get(), "/v1/whoami", None, None)
            .await?
            .body)
    }
}

fn page_path(base: &str, cursor: Option<&str>, limit: Option<usize>) -> String {
    let mut q = Vec::new();
    if let Some(c) = cursor {
        q.push(format!("cursor={c}"));
    }
    if let Some(l) = limit {
        q.push(format!("limit={l}"));
    }
    if q.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", q.join("&"))
    }
}

/// The keys as a table: id, role, account, expiry, name.
pub fn keys_table(keys: &[KeyInfo]) -> String {
    let mut out = format!(
        "{:<20} {:<9} {:<14} {:<20} {}\n",
        "ID", "ROLE", "ACCOUNT", "EXPIRES (UTC)", "NAME"
    );
    for k in keys {
        out.push_str(&format!(
            "{:<20} {:<9} {:<14} {:<20} {}\n",
            k.id,
            k.role.as_str(),
            k.account.as_ref().map_or("-", |a| a.as_str()),
            k.expires_at_ms.map_or("never".into(), utc_text),
            k.name
        ));
    }
    out
}

/// The audit records as a table, in the order given.
pub fn audit_table(records: &[AuditRecord]) -> String {
    let mut out = format!(
        "{:>6} {:<19} {:<22} {:<9} {:<22} {:<22} {:<13} {}\n",
        "SEQ", "WHEN (UTC)", "WHO", "ROLE", "ACTION", "FROM", "OUTCOME", "DETAIL"
    );
    for r in records {
        out.push_str(&format!(
            "{:>6} {:<19} {:<22} {:<9} {:<22} {:<22} {:<13} {}\n",
            r.seq,
            utc_text(r.at_ms),
            r.actor,
            r.role.as_str(),
            r.action,
            if r.origin.is_empty() { "-" } else { &r.origin },
            r.outcome,
            r.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    #[test]
    fn page_paths_carry_only_what_was_given() {
        assert_eq!(page_path("/v1/audit", None, None), "/v1/audit");
        assert_eq!(
            page_path("/v1/audit", Some("00ff"), Some(5)),
            "/v1/audit?cursor=00ff&limit=5"
        );
    }

    #[test]
    fn the_audit_table_has_a_row_per_record() {
        let r = AuditRecord {
            seq: 7,
            at_ms: 0,
            actor: "key:k-1".into(),
            role: Role::Merchant,
            action: "restock".into(),
            detail: "sku=A qty=2".into(),
            origin: String::new(),
            outcome: "ok".into(),
        };
        let t = audit_table(&[r]);
        assert_eq!(t.lines().count(), 2);
        assert!(t.contains("key:k-1") && t.contains("sku=A qty=2") && t.contains(" - "));
    }
}
