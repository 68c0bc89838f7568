//! The cluster's status (`GET /v1/cluster`) as an operator reads it.

use serde_json::Value;

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
