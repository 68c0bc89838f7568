//! The operator's actions on a running cluster: membership, leadership
//! transfer, a gateway's weights and draining a node. The calls behind
//! `keel admin members|leader|weights|drain`.
//!
//! Membership changes and transfers are made on the leader, so each is
//! sent to the leader that the asked endpoint names in `/v1/cluster`, and
//! sent again to a new leader when the first answers `not_leader` (a
//! leader changed in between).

use serde_json::{json, Value};

use crate::{method_delete, method_get, method_post, AttemptError, Client, ClientError, Reply};

/// How many times an operation follows a `not_leader` answer to the leader
/// it names before giving up: leadership rarely moves twice within one
/// operator action.
pub const LEADER_HOPS_MAX: usize = 3;

/// Method of a gateway's weight change.
fn method_put() -> hyper::Method {
    hyper::Method::PUT
}

impl Client {
    /// `GET /v1/cluster` asked of `endpoint`.
    pub async fn cluster_at(&self, endpoint: &str) -> Result<Value, ClientError> {
        self.call_at(endpoint, method_get(), "/v1/cluster", None, None)
            .await
            .map(|r| r.body)
            .map_err(attempt)
    }

    /// The leader's `(id, address)` as `endpoint` knows it.
    pub async fn leader_of(&self, endpoint: &str) -> Result<(u64, String), ClientError> {
        let c = self.cluster_at(endpoint).await?;
        leader_in(&c).ok_or_else(|| {
            ClientError::Unavailable(format!("{endpoint} knows no leader at the moment"))
        })
    }

    /// Sends an operation to the leader `endpoint` names, following
    /// `not_leader` answers up to [`LEADER_HOPS_MAX`] times.
    async fn on_leader(
        &self,
        endpoint: &str,
        method: hyper::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let (_, mut addr) = self.leader_of(endpoint).await?;
        let mut last = String::new();
        for _ in 0..LEADER_HOPS_MAX {
            match self.call_at(&addr, method.clone(), path, body, None).await {
                Ok(r) => return Ok(r),
                Err(AttemptError::Problem(p)) if p.kind() == Some("not_leader") => {
                    last = p.to_string();
                    let ClientError::Problem { body, .. } = &p else {
                        return Err(p);
                    };
                    match body["leader_addr"].as_str() {
                        Some(a) => addr = a.to_owned(),
                        None => addr = self.leader_of(endpoint).await?.1,
                    }
                }
                Err(e) => return Err(attempt(e)),
            }
        }
        Err(ClientError::Unavailable(format!(
            "the leader kept moving: {last}"
        )))
    }

    /// Adds node `id` at `addr` as a learner and waits until it has caught
    /// up; returns the cluster's status.
    pub async fn add_learner(
        &self,
        endpoint: &str,
        id: u64,
        addr: &str,
    ) -> Result<Value, ClientError> {
        let body = json!({"id": id, "addr": addr});
        self.on_leader(endpoint, method_post(), "/v1/cluster/learners", Some(&body))
            .await
            .map(|r| r.body)
    }

    /// Promotes learner `id` to voter; returns the cluster's status.
    pub async fn promote(&self, endpoint: &str, id: u64) -> Result<Value, ClientError> {
        let body = json!({"id": id});
        self.on_leader(endpoint, method_post(), "/v1/cluster/members", Some(&body))
            .await
            .map(|r| r.body)
    }

    /// Removes member `id`. Without `force` the leader refuses (409
    /// `membership_at_risk`) when the voters left could not survive one
    /// more failure.
    pub async fn remove_member(
        &self,
        endpoint: &str,
        id: u64,
        force: bool,
    ) -> Result<Value, ClientError> {
        let path = format!("/v1/cluster/members/{id}?force={force}");
        self.on_leader(endpoint, method_delete(), &path, None)
            .await
            .map(|r| r.body)
    }

    /// Hands leadership to `to` (by default the voter holding most of the
    /// log); returns the transfer (`from`, `to`, `term`, `paused_ms`).
    pub async fn transfer_leader(
        &self,
        endpoint: &str,
        to: Option<u64>,
    ) -> Result<Value, ClientError> {
        let body = match to {
            Some(t) => json!({"to": t}),
            None => json!({}),
        };
        self.on_leader(endpoint, method_post(), "/v1/cluster/leader", Some(&body))
            .await
            .map(|r| r.body)
    }

    /// A gateway's view of its nodes (`GET /status`): address, weight,
    /// health, the leader it knows.
    pub async fn gateway_status(&self, gateway: &str) -> Result<Value, ClientError> {
        self.call_at(gateway, method_get(), "/status", None, None)
            .await
            .map(|r| r.body)
            .map_err(attempt)
    }

    /// Sets the weight a gateway gives node `node` (its address); 0 sends
    /// it no new requests.
    pub async fn set_weight(
        &self,
        gateway: &str,
        node: &str,
        weight: u32,
    ) -> Result<Value, ClientError> {
        let body = json!({"node": node, "weight": weight});
        self.call_at(gateway, method_put(), "/gateway/weights", Some(&body), None)
            .await
            .map(|r| r.body)
            .map_err(attempt)
    }

    /// Drains node `id` for maintenance: every gateway in `gateways` stops
    /// sending it requests (weight 0), and if it leads, leadership moves
    /// to the voter holding most of the log. Returns what was done, one
    /// line per step.
    pub async fn drain(
        &self,
        endpoint: &str,
        id: u64,
        gateways: &[String],
    ) -> Result<Vec<String>, ClientError> {
        let c = self.cluster_at(endpoint).await?;
        let addr = member_addr(&c, id).ok_or_else(|| {
            ClientError::Invalid(format!("node {id} is not a member of the cluster"))
        })?;
        let mut done = Vec::new();
        for g in gateways {
            self.set_weight(g, &addr, 0).await?;
            done.push(format!("gateway {g}: node {id} ({addr}) weight 0"));
        }
        if leader_in(&c).is_some_and(|(l, _)| l == id) {
            let t = self.transfer_leader(endpoint, None).await?;
            done.push(format!(
                "leadership moved from node {} to node {} (term {}, writes paused {} ms)",
                t["from"], t["to"], t["term"], t["paused_ms"]
            ));
        } else {
            done.push(format!("node {id} does not lead: no transfer needed"));
        }
        Ok(done)
    }
}

impl Client {
    /// Every member's alerts (`GET /v1/alerts` of each member that
    /// `endpoint` lists), as `(node id, alerts or why they could not be
    /// read)`.
    pub async fn cluster_alerts(
        &self,
        endpoint: &str,
    ) -> Result<Vec<(u64, Result<Value, ClientError>)>, ClientError> {
        let c = self.cluster_at(endpoint).await?;
        let mut out = Vec::new();
        for m in c["members"].as_array().into_iter().flatten() {
            let (Some(id), Some(addr)) = (m["id"].as_u64(), m["addr"].as_str()) else {
                continue;
            };
            let alerts = self
                .call_at(addr, method_get(), "/v1/alerts", None, None)
                .await
                .map(|r| r.body)
                .map_err(attempt);
            out.push((id, alerts));
        }
        Ok(out)
    }
}

/// Formats the alerts of [`Client::cluster_alerts`]: open ones first, then
/// up to `history` that ended, newest first, one row each.
pub fn alerts_table(nodes: &[(u64, Result<Value, ClientError>)], history: usize) -> String {
    let mut out = format!(
        "{:<5} {:<8} {:<9} {:<22} {:<20} {:<20} {}\n",
        "NODE", "STATE", "SEVERITY", "ALERT", "STARTED (UTC)", "ENDED (UTC)", "SUMMARY"
    );
    let time = |v: &Value| {
        v.as_u64()
            .map_or("-".to_owned(), keel_protocol::clock::utc_text)
    };
    for (id, alerts) in nodes {
        let alerts = match alerts {
            Ok(a) => a,
            Err(e) => {
                out.push_str(&format!("{id:<5} unreachable: {e}\n"));
                continue;
            }
        };
        let active = alerts["active"].as_array().into_iter().flatten();
        let ended = alerts["history"]
            .as_array()
            .into_iter()
            .flatten()
            .take(history);
        for (state, a) in active
            .map(|a| ("OPEN", a))
            .chain(ended.map(|a| ("ended", a)))
        {
            out.push_str(&format!(
                "{:<5} {:<8} {:<9} {:<22} {:<20} {:<20} {} ({})\n",
                id,
                state,
                a["severity"].as_str().unwrap_or("?"),
                a["name"].as_str().unwrap_or("?"),
                time(&a["started_ms"]),
                time(&a["ended_ms"]),
                a["summary"].as_str().unwrap_or(""),
                a["subject"].as_str().unwrap_or(""),
            ));
        }
    }
    out
}

fn attempt(e: AttemptError) -> ClientError {
    match e {
        AttemptError::Problem(p) => p,
        AttemptError::Invalid(m) => ClientError::Invalid(m),
        AttemptError::NotSent(m) | AttemptError::Lost(m) => ClientError::Unavailable(m),
    }
}

/// The leader's `(id, address)` in a `/v1/cluster` answer.
pub fn leader_in(cluster: &Value) -> Option<(u64, String)> {
    let id = cluster["leader_id"].as_u64()?;
    Some((id, member_addr(cluster, id)?))
}

/// Member `id`'s address in a `/v1/cluster` answer.
pub fn member_addr(cluster: &Value, id: u64) -> Option<String> {
    cluster["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"].as_u64() == Some(id))?["addr"]
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    #[test]
    fn the_leader_and_a_members_address_are_read_from_the_status() {
        let c = json!({"leader_id": 2, "members": [
            {"id": 1, "addr": "10.0.0.1:7101"}, {"id": 2, "addr": "10.0.0.2:7101"}]});
        assert_eq!(leader_in(&c), Some((2, "10.0.0.2:7101".into())));
        assert_eq!(member_addr(&c, 1).as_deref(), Some("10.0.0.1:7101"));
        assert_eq!(member_addr(&c, 3), None);
        assert_eq!(leader_in(&json!({"leader_id": null, "members": []})), None);
    }
}
