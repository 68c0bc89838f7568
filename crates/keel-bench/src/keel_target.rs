//! Keel as a load target: each workload's requests through
//! `keel_client::Client::call_at`, one attempt per request (no client
//! retries: every failure the cluster lets through is counted), moving to
//! the next endpoint after a refused connection, a lost reply or a 503.

use serde_json::{json, Value};

use keel_client::{AttemptError, Client, HttpMethod};

use crate::seed::{customer, sku};
use crate::target::{OpResult, Target};
use crate::workload::Workload;

/// Client tasks sharing one HTTP client: `keel_client::Client` keeps 64
/// idle connections per host, so one serves at most 64 closed-loop tasks
/// without reconnecting.
pub const TASKS_PER_HTTP_CLIENT: u64 = 64;
/// Reservation lifetime of benchmark orders (7 days, the maximum): no
/// order expires during a run, so the expiry sweeper adds no work that the
/// anchors do not do.
pub const ORDER_TTL_S: u32 = 7 * 24 * 3600;
/// Mixed workload, out of every 10 operations: orders.
pub const MIXED_ORDERS_PER_10: u64 = 5;
/// Mixed workload, out of every 10 operations: linearizable product
/// reads (the rest are `consistency=local` reads).
pub const MIXED_LINEARIZABLE_READS_PER_10: u64 = 3;
/// Problem types that are correct business answers, not failures.
const REFUSALS: [&str; 2] = ["out_of_stock", "insufficient_funds"];

/// The SKU client `client` uses for its `seq`-th request: spread over the
/// catalogue, different per client (as `keel bench cluster` does).
pub fn spread_sku(client: u64, seq: u64, skus: u64) -> u64 {
    client
        .wrapping_mul(7_919)
        .wrapping_add(seq.wrapping_mul(104_729))
        % skus.max(1)
}

/// Keel under one workload.
pub struct KeelTarget {
    http: Vec<Client>,
    endpoints: Vec<String>,
    workload: Workload,
    skus: u64,
    customers: u64,
    flash_sku: String,
    batch_size: u64,
    tag: String,
}

/// What a Keel workload needs besides the endpoints.
#[derive(Clone, Debug)]
pub struct KeelLoad {
    /// The workload.
    pub workload: Workload,
    /// Uniform SKUs seeded (`S0..`).
    pub skus: u64,
    /// Customers seeded (`c0..`); client `k` buys as `c{k % customers}`.
    pub customers: u64,
    /// The flash-sale SKU.
    pub flash_sku: String,
    /// Orders per `/v1/batch` request of the batch workload.
    pub batch_size: u64,
    /// Makes idempotency keys unique to this run.
    pub tag: String,
}

impl KeelTarget {
    /// `load` against `endpoints` for `clients` tasks, with admin `token`.
    pub fn new(
        endpoints: Vec<String>,
        token: Option<String>,
        clients: u64,
        load: KeelLoad,
    ) -> Self {
        let n = clients.div_ceil(TASKS_PER_HTTP_CLIENT).max(1);
        let http = (0..n)
            .map(|_| Client::new(endpoints.clone(), token.clone()))
            .collect();
        Self {
            http,
            endpoints,
            workload: load.workload,
            skus: load.skus,
            customers: load.customers.max(1),
            flash_sku: load.flash_sku,
            batch_size: load.batch_size.max(1),
            tag: load.tag,
        }
    }

    fn order_body(&self, client: u64, sku: &str) -> Value {
        json!({
            "customer": customer(client % self.customers),
            "lines": [{"sku": sku, "qty": 1}],
            "ttl_seconds": ORDER_TTL_S,
        })
    }

    async fn call(
        &self,
        conn: &mut KeelConn,
        client: u64,
        method: HttpMethod,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Value, OpResult> {
        let http = &self.http[(client / TASKS_PER_HTTP_CLIENT) as usize % self.http.len()];
        let ep = &self.endpoints[conn.ep % self.endpoints.len()];
        match http.call_at(ep, method, path, body, key).await {
            Ok(r) => Ok(r.body),
            Err(e) => {
                let r = classify(&e);
                if moves_on(&e) {
                    conn.ep = (conn.ep + 1) % self.endpoints.len();
                }
                Err(r)
            }
        }
    }

    async fn place(
        &self,
        conn: &mut KeelConn,
        client: u64,
        seq: u64,
        sku: &str,
    ) -> Result<Value, OpResult> {
        let key = format!("{}-{client}-{seq}", self.tag);
        let body = self.order_body(client, sku);
        self.call(
            conn,
            client,
            HttpMethod::POST,
            "/v1/orders",
            Some(&body),
            Some(&key),
        )
        .await
    }

    async fn checkout(
        &self,
        conn: &mut KeelConn,
        client: u64,
        seq: u64,
    ) -> Result<Value, OpResult> {
        let s = sku(spread_sku(client, seq, self.skus));
        let order = self.place(conn, client, seq, &s).await?;
        let id = order["id"]
            .as_u64()
            .ok_or_else(|| OpResult::Error("order reply without id".into()))?;
        let key = format!("{}-{client}-{seq}-pay", self.tag);
        let path = format!("/v1/orders/{id}/pay");
        self.call(
            conn,
            client,
            HttpMethod::POST,
            &path,
            Some(&json!({})),
            Some(&key),
        )
        .await
    }

    async fn batch(&self, conn: &mut KeelConn, client: u64, seq: u64) -> Result<Value, OpResult> {
        let cmds: Vec<Value> = (0..self.batch_size)
            .map(|j| {
                let s = sku(spread_sku(client, seq * self.batch_size + j, self.skus));
                json!({"place_order": self.order_body(client, &s)})
            })
            .collect();
        let key = format!("{}-{client}-{seq}", self.tag);
        let reply = self
            .call(
                conn,
                client,
                HttpMethod::POST,
                "/v1/batch",
                Some(&Value::Array(cmds)),
                Some(&key),
            )
            .await?;
        let refused = reply["results"].as_array().map_or(usize::MAX, |rs| {
            rs.iter()
                .filter(|x| x["status"].as_u64().unwrap_or(500) >= 300)
                .count()
        });
        if refused == 0 {
            Ok(reply)
        } else {
            Err(OpResult::Refused("batch_commands_refused".into()))
        }
    }

    async fn read(
        &self,
        conn: &mut KeelConn,
        client: u64,
        seq: u64,
        local: bool,
    ) -> Result<Value, OpResult> {
        let s = sku(spread_sku(client, seq, self.skus));
        let path = if local {
            format!("/v1/products/{s}?consistency=local")
        } else {
            format!("/v1/products/{s}")
        };
        self.call(conn, client, HttpMethod::GET, &path, None, None)
            .await
    }
}

/// Per-client state: which endpoint it talks to.
#[derive(Clone, Copy, Debug)]
pub struct KeelConn {
    ep: usize,
}

impl Target for KeelTarget {
    type Conn = KeelConn;

    fn conn(&self, client: u64) -> KeelConn {
        // Clients start spread over the endpoints, as behind a balancer.
        KeelConn {
            ep: client as usize % self.endpoints.len().max(1),
        }
    }

    async fn op(&self, conn: &mut KeelConn, client: u64, seq: u64) -> OpResult {
        let r = match self.workload {
            Workload::Uniform => {
                let s = sku(spread_sku(client, seq, self.skus));
                self.place(conn, client, seq, &s).await
            }
            Workload::FlashSale => self.place(conn, client, seq, &self.flash_sku).await,
            Workload::Checkout => self.checkout(conn, client, seq).await,
            Workload::Batch => self.batch(conn, client, seq).await,
            Workload::Mixed => match seq % 10 {
                n if n < MIXED_ORDERS_PER_10 => {
                    let s = sku(spread_sku(client, seq, self.skus));
                    self.place(conn, client, seq, &s).await
                }
                n if n < MIXED_ORDERS_PER_10 + MIXED_LINEARIZABLE_READS_PER_10 => {
                    self.read(conn, client, seq, false).await
                }
                _ => self.read(conn, client, seq, true).await,
            },
        };
        r.map_or_else(|e| e, |_| OpResult::Ok)
    }

    fn items_per_op(&self) -> u64 {
        match self.workload {
            Workload::Batch => self.batch_size,
            _ => 1,
        }
    }
}

/// The error type of a failed attempt: the problem `type`, or how the
/// connection failed.
fn classify(e: &AttemptError) -> OpResult {
    match e {
        AttemptError::NotSent(_) => OpResult::Error("connect".into()),
        AttemptError::Lost(m) if m.contains("timed out") => OpResult::Error("timeout".into()),
        AttemptError::Lost(_) => OpResult::Error("lost reply".into()),
        AttemptError::Invalid(_) => OpResult::Error("invalid request".into()),
        AttemptError::Problem(p) => {
            let kind = p.kind().unwrap_or("unknown");
            if REFUSALS.contains(&kind) {
                OpResult::Refused(kind.to_owned())
            } else {
                OpResult::Error(kind.to_owned())
            }
        }
    }
}

/// Whether the client should try another endpoint next time.
fn moves_on(e: &AttemptError) -> bool {
    match e {
        AttemptError::NotSent(_) | AttemptError::Lost(_) => true,
        AttemptError::Invalid(_) => false,
        AttemptError::Problem(p) => p.kind() == Some("unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::ClientError;

    fn problem(kind: &str) -> AttemptError {
        AttemptError::Problem(ClientError::Problem {
            status: 409,
            kind: kind.into(),
            detail: String::new(),
            body: Value::Null,
        })
    }

    #[test]
    fn refusals_are_answers_and_failures_are_typed() {
        assert_eq!(
            classify(&problem("out_of_stock")),
            OpResult::Refused("out_of_stock".into())
        );
        assert_eq!(
            classify(&problem("indeterminate")),
            OpResult::Error("indeterminate".into())
        );
        assert_eq!(
            classify(&AttemptError::NotSent("x".into())),
            OpResult::Error("connect".into())
        );
        assert_eq!(
            classify(&AttemptError::Lost("operation timed out".into())),
            OpResult::Error("timeout".into())
        );
        assert!(moves_on(&problem("unavailable")));
        assert!(!moves_on(&problem("out_of_stock")));
    }

    #[test]
    fn skus_spread_within_the_catalogue() {
        assert_eq!(spread_sku(0, 0, 10), 0);
        assert_ne!(spread_sku(1, 1, 1_000), spread_sku(1, 2, 1_000));
        assert_eq!(spread_sku(5, 5, 1), 0);
        assert!((0..100).all(|i| spread_sku(3, i, 7) < 7));
    }
}
