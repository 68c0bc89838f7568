//! The catalogue a Keel run needs (merchant and external accounts, funded
//! customers `c0..`, SKUs `S0..`, a flash-sale SKU), written through
//! `/v1/batch` with keys derived from each item's position, so seeding the
//! same catalogue twice replays instead of failing.

use keel_client::Client;
use serde_json::{json, Value};

use crate::BenchError;

/// Commands per `/v1/batch` request (the node's `BATCH_COMMANDS_MAX`).
pub const SEED_CHUNK: usize = 1_000;
/// Stock of every uniform SKU: far more than any run can order.
pub const SKU_STOCK: u64 = 1_000_000_000;
/// Money given to each customer (minor units) so checkouts never run dry.
pub const CUSTOMER_FUNDS: i64 = 1_000_000_000_000;
/// Price of every product (minor units).
pub const PRICE: i64 = 100;
/// Prefix of every seeding key; bump it when the catalogue's shape changes.
const SEED_KEY: &str = "bench-seed-v1";

/// What to seed.
#[derive(Clone, Debug)]
pub struct Catalogue {
    /// SKUs `S0..S{skus-1}`, each with [`SKU_STOCK`] units.
    pub skus: u64,
    /// Customers `c0..`, each funded with [`CUSTOMER_FUNDS`].
    pub customers: u64,
    /// A flash-sale SKU and its (limited) stock.
    pub flash: Option<(String, u64)>,
}

/// The uniform SKU with index `n`.
pub fn sku(n: u64) -> String {
    format!("S{n}")
}

/// The customer with index `n`.
pub fn customer(n: u64) -> String {
    format!("c{n}")
}

fn accounts() -> Vec<Value> {
    vec![
        json!({"open_account": {"id": "shop", "kind": "merchant", "currency": "EUR"}}),
        json!({"open_account": {"id": "world", "kind": "external", "currency": "EUR"}}),
    ]
}

fn customers(n: u64) -> Vec<Value> {
    (0..n)
        .flat_map(|c| {
            [
                json!({"open_account": {"id": customer(c), "kind": "customer", "currency": "EUR"}}),
                json!({"deposit": {"account": customer(c), "amount": CUSTOMER_FUNDS}}),
            ]
        })
        .collect()
}

fn product(sku: &str, stock: u64) -> [Value; 2] {
    [
        json!({"upsert_product": {"sku": sku, "name": "bench", "price": PRICE, "currency": "EUR"}}),
        json!({"restock": {"sku": sku, "qty": stock}}),
    ]
}

/// Sends `cmds` in [`SEED_CHUNK`]s under keys `{base}-{chunk}`; a refusal
/// other than `already_exists` (left by another seeding) is an error.
async fn send(admin: &Client, base: &str, cmds: &[Value]) -> Result<(), BenchError> {
    for (i, chunk) in cmds.chunks(SEED_CHUNK).enumerate() {
        let r = admin
            .post(
                "/v1/batch",
                &Value::Array(chunk.to_vec()),
                &format!("{base}-{i}"),
            )
            .await?;
        let results = r.body["results"]
            .as_array()
            .ok_or_else(|| BenchError::setup("seeding", "batch reply without results"))?;
        for x in results {
            let status = x["status"].as_u64().unwrap_or(500);
            let kind = x["body"]["type"].as_str().unwrap_or("");
            if status >= 300 && kind != "already_exists" {
                return Err(BenchError::setup(
                    "seeding",
                    format!("{base} chunk {i}: {status} {kind}: {}", x["body"]["detail"]),
                ));
            }
        }
    }
    Ok(())
}

/// Seeds `cat` through `admin` (an admin client).
pub async fn seed(admin: &Client, cat: &Catalogue) -> Result<(), BenchError> {
    send(admin, &format!("{SEED_KEY}-accounts"), &accounts()).await?;
    send(
        admin,
        &format!("{SEED_KEY}-customers"),
        &customers(cat.customers),
    )
    .await?;
    let products: Vec<Value> = (0..cat.skus)
        .flat_map(|s| product(&sku(s), SKU_STOCK))
        .collect();
    send(admin, &format!("{SEED_KEY}-products"), &products).await?;
    if let Some((name, stock)) = &cat.flash {
        send(
            admin,
            &format!("{SEED_KEY}-flash-{name}"),
            &product(name, *stock),
        )
        .await?;
    }
    Ok(())
}
