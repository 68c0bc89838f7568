//! The cluster's status (`GET /v1/cluster`) as an operator reads it.

use serde_json::Value;

use crate::{method_get, AttemptError, Client};

impl Client {
    /// The cluster's status as [`status_table`] formats it, asked of
    /// `endpoint` alone (an operator asking one node wants that node's view).
    pub async fn status_table_at(&self, endpoint: &str) -> Result<String, AttemptError> {
        let reply = self
            .call_at(endpoint, method_get(), "/v1/cluster", None, None)
            .await?;
        Ok(status_table(&reply.body))
    }
}

/// Formats `/v1/cluster` as a table: the leader and term, then one row
/// per member (id, address, membership, role, term, applied index, lag,
/// health).
pub fn status_table(v: &Value) -> String {
    let mut out = format!(
        "leader: {}   term: {}\n{:<4} {:<22} {:<8} {:<10} {:>6} {:>10} {:>6} {:<7}\n",
        v["leader_id"]
            .as_u64()
            .map_or("none".into(), |l| l.to_string()),
        v["term"],
        "ID",
        "ADDRESS",
        "MEMBER",
        "ROLE",
        "TERM",
        "APPLIED",
        "LAG",
        "HEALTHY"
    );
    let opt = |x: &Value| x.as_u64().map_or("-".to_string(), |n| n.to_string());
    for m in v["members"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<4} {:<22} {:<8} {:<10} {:>6} {:>10} {:>6} {:<7}\n",
            opt(&m["id"]),
            m["addr"].as_str().unwrap_or("?"),
            m["membership"].as_str().unwrap_or("?"),
            m["role"].as_str().unwrap_or("?"),
            opt(&m["term"]),
            opt(&m["applied_index"]),
            opt(&m["lag"]),
            if m["healthy"].as_bool() == Some(true) {
                "yes"
            } else {
                "NO"
            },
        ));
    }
    out
}
