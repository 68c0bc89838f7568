//! Key layouts of the tables (see [`crate::tables::Table`]). Numbers are
//! big-endian so byte order is numeric order; string ids never contain 0x00,
//! so 0x00 separates an id from what follows it.

use crate::ids::{AccountId, Currency, OrderId};
use crate::model::AccountKind;

/// Key of an order in `Orders`.
pub fn order(id: OrderId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// Prefix of one customer's rows in `CustomerOrders`.
pub fn customer_prefix(customer: &AccountId) -> Vec<u8> {
    let mut k = customer.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

/// Key in `CustomerOrders`: the inverted id makes an ascending scan newest first.
pub fn customer_order(customer: &AccountId, id: OrderId) -> Vec<u8> {
    let mut k = customer_prefix(customer);
    k.extend_from_slice(&(!id.0).to_be_bytes());
    k
}

/// The order id at the end of a `CustomerOrders` key.
pub fn order_of_customer_key(key: &[u8]) -> Option<OrderId> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(OrderId(!u64::from_be_bytes(tail)))
}

/// Key in `Expiry`.
pub fn expiry(expires_at_ms: u64, id: OrderId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&expires_at_ms.to_be_bytes());
    k[8..].copy_from_slice(&id.0.to_be_bytes());
    k
}

/// The order id at the end of an `Expiry` key.
pub fn order_of_expiry_key(key: &[u8]) -> Option<OrderId> {
    let tail: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some(OrderId(u64::from_be_bytes(tail)))
}

/// Key in `IdempotencyByTime`.
pub fn idempotency_by_time(at_ms: u64, request_id: &str) -> Vec<u8> {
    let mut k = at_ms.to_be_bytes().to_vec();
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// Key in `CurrencyAccounts`.
pub fn currency_account(currency: Currency, kind: AccountKind) -> Vec<u8> {
    let mut k = currency.as_str().as_bytes().to_vec();
    k.push(match kind {
        AccountKind::Customer => b'c',
        AccountKind::Merchant => b'm',
        AccountKind::External => b'x',
    });
    k
}

/// Key of the summary singleton in `Meta`.
pub const META_SUMMARY: &[u8] = b"summary";
/// Key in `Meta` of the number of API keys held (`u64`).
pub const META_KEY_COUNT: &[u8] = b"key_count";
/// Key in `Meta` of the sequence number the next audit record gets (`u64`).
pub const META_AUDIT_NEXT: &[u8] = b"audit_next";

/// Key in `Audit`.
pub fn audit(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_keys_sort_newest_first_and_round_trip() {
        let c = AccountId::new("alice").unwrap();
        let k1 = customer_order(&c, OrderId(1));
        let k2 = customer_order(&c, OrderId(2));
        assert!(k2 < k1);
        assert_eq!(order_of_customer_key(&k1), Some(OrderId(1)));
        assert!(k1.starts_with(&customer_prefix(&c)));
        // "alice" must not be a prefix match for "alice2".
        let other = customer_order(&AccountId::new("alice2").unwrap(), OrderId(1));
        assert!(!other.starts_with(&customer_prefix(&c)));
    }

    #[test]
    fn expiry_keys_sort_by_time_then_id() {
        assert!(expiry(5, OrderId(9)) < expiry(6, OrderId(1)));
        assert!(expiry(5, OrderId(1)) < expiry(5, OrderId(2)));
        assert_eq!(
            order_of_expiry_key(&expiry(5, OrderId(7))),
            Some(OrderId(7))
        );
    }
}
