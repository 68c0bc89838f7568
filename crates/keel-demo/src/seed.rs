//! The shop the demo sells from: a catalogue of ordinary products, one
//! flash-sale SKU with fewer units than its buyers want, the merchant and
//! external accounts, and funded customers. [`Catalogue`] names them once;
//! [`seed`] writes them.

use std::collections::BTreeMap;

use keel_chaos::StateQuery;
use keel_client::Client;
use keel_domain::{AccountId, Sku};

use crate::DemoError;

/// Customers seeded; shopper `t` buys for customer `t % CUSTOMERS`.
pub const CUSTOMERS: u64 = 50;
/// Ordinary products seeded.
pub const PRODUCTS: u64 = 20;
/// Units of each ordinary product: more than the shoppers buy in the
/// longest demo ([`crate::DURATION_S_MAX`]), so only the flash sale sells
/// out.
pub const PRODUCT_STOCK: u64 = 100_000;
/// Money each customer starts with (minor units): more than a shopper
/// spends in the longest demo.
pub const CUSTOMER_FUNDS: i64 = 100_000_000;
/// Price of the flash-sale item (minor units).
pub const FLASH_PRICE: i64 = 999;
/// The currency of every price and account.
const CURRENCY: &str = "EUR";
/// The merchant every order pays.
const MERCHANT: &str = "shop";
/// Where deposits come from.
const EXTERNAL: &str = "world";

/// Every SKU and account of the demo's shop, with the stock it starts
/// with.
#[derive(Clone, Debug)]
pub struct Catalogue {
    /// The ordinary products, `SKU-0001` on; product `i` (from 1) costs
    /// `100 * i`.
    pub products: Vec<Sku>,
    /// The flash-sale SKU.
    pub flash: Sku,
    /// Units of the flash-sale SKU.
    pub flash_stock: u64,
    /// The customers, `cust-001` on.
    pub customers: Vec<AccountId>,
}

impl Catalogue {
    /// The demo's shop with `flash_stock` units on sale.
    pub fn new(flash_stock: u64) -> Result<Self, DemoError> {
        Ok(Self {
            products: (1..=PRODUCTS)
                .map(|i| Sku::new(format!("SKU-{i:04}")))
                .collect::<Result<_, _>>()?,
            flash: Sku::new("FLASH-1")?,
            flash_stock,
            customers: (1..=CUSTOMERS)
                .map(|i| AccountId::new(format!("cust-{i:03}")))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The customer shopper `task` buys for.
    pub fn customer_of(&self, task: u64) -> &AccountId {
        // `customers` has CUSTOMERS entries, so the index is in range.
        &self.customers[(task % CUSTOMERS) as usize]
    }

    /// Every SKU with the units put on hand.
    pub fn supplied(&self) -> BTreeMap<Sku, u64> {
        let mut m: BTreeMap<Sku, u64> = self
            .products
            .iter()
            .map(|s| (s.clone(), PRODUCT_STOCK))
            .collect();
        m.insert(self.flash.clone(), self.flash_stock);
        m
    }

    /// What to read back after the run: every SKU and every account.
    pub fn state_query(&self) -> Result<StateQuery, DemoError> {
        let mut accounts = vec![AccountId::new(MERCHANT)?, AccountId::new(EXTERNAL)?];
        accounts.extend(self.customers.iter().cloned());
        Ok(StateQuery {
            supplied: self.supplied(),
            accounts,
            accounts_in_doubt: Vec::new(),
        })
    }
}

/// Opens the merchant and external accounts, the products with their stock
/// and the funded customers, each write under a fixed key so a resent one
/// changes nothing.
pub async fn seed(c: &Client, catalogue: &Catalogue) -> Result<(), DemoError> {
    let fail = |what: String| move |e| DemoError::client(format!("seeding: {what}"), e);
    for (id, kind) in [(MERCHANT, "merchant"), (EXTERNAL, "external")] {
        c.open_account(id, kind, CURRENCY, &format!("seed-acct-{id}"))
            .await
            .map_err(fail(format!("account {id}")))?;
    }
    for (i, sku) in (1..).zip(&catalogue.products) {
        let name = format!("Product {i}");
        c.upsert_product(
            sku.as_str(),
            &name,
            100 * i,
            CURRENCY,
            &format!("seed-p-{sku}"),
        )
        .await
        .map_err(fail(format!("product {sku}")))?;
        c.restock(sku.as_str(), PRODUCT_STOCK, &format!("seed-r-{sku}"))
            .await
            .map_err(fail(format!("stock of {sku}")))?;
    }
    let flash = catalogue.flash.as_str();
    c.upsert_product(
        flash,
        "Flash sale item",
        FLASH_PRICE,
        CURRENCY,
        "seed-p-flash",
    )
    .await
    .map_err(fail(format!("product {flash}")))?;
    c.restock(flash, catalogue.flash_stock, "seed-r-flash")
        .await
        .map_err(fail(format!("stock of {flash}")))?;
    for id in &catalogue.customers {
        c.open_account(id.as_str(), "customer", CURRENCY, &format!("seed-a-{id}"))
            .await
            .map_err(fail(format!("account {id}")))?;
        c.deposit(id.as_str(), CUSTOMER_FUNDS, &format!("seed-d-{id}"))
            .await
            .map_err(fail(format!("funds of {id}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flash_sale_and_every_product_are_supplied() {
        let c = Catalogue::new(200).expect("valid names");
        let supplied = c.supplied();
        assert_eq!(supplied.len() as u64, PRODUCTS + 1);
        assert_eq!(supplied[&c.flash], 200);
        assert_eq!(c.customer_of(CUSTOMERS + 2), c.customer_of(2));
        let q = c.state_query().expect("valid names");
        assert_eq!(q.accounts.len() as u64, CUSTOMERS + 2);
    }
}
