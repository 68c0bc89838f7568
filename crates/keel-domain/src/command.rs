//! Commands: every write the state machine accepts, and the batch a Raft entry
//! carries. Validation that needs no state happens at construction and
//! deserialisation ([`Command::validate`]); the rest happens in `apply`.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::identity::{
    Role, AUDIT_TEXT_LEN_MAX, CUSTOMER_TOKEN_TTL_MAX_S, KEY_NAME_LEN_MAX, KEY_TTL_MAX_S,
};
use crate::ids::{AccountId, Currency, KeyId, OrderId, ProductName, RequestId, Sku};
use crate::model::AccountKind;
use crate::money::Minor;

/// Most lines one order may have: a cart, not a warehouse transfer.
pub const ORDER_LINES_MAX: usize = 100;
/// Most units of one SKU on one line.
pub const LINE_QTY_MAX: u64 = 10_000;
/// Most units one `Restock` or `SetStock` may name; keeps every sum of stock
/// far from `u64` overflow for any realistic number of operations.
pub const STOCK_QTY_MAX: u64 = 1_000_000_000_000;
/// Largest single deposit in minor units (10^15: ten trillion of a 2-decimal
/// currency); keeps balances far from `i64` overflow.
pub const DEPOSIT_MAX: i64 = 1_000_000_000_000_000;
/// Largest unit price in minor units.
pub const PRICE_MAX: i64 = 1_000_000_000_000;
/// Reservation lifetime when the order does not say (15 minutes).
pub const ORDER_TTL_DEFAULT_S: u32 = 15 * 60;
/// Longest reservation lifetime an order may ask for (7 days).
pub const ORDER_TTL_MAX_S: u32 = 7 * 24 * 3600;
/// Most commands in one batch (`/v1/batch` and one Raft entry alike).
pub const BATCH_COMMANDS_MAX: usize = 1_000;

/// Longest `origin` an envelope may carry (a socket address fits).
pub const ORIGIN_LEN_MAX: usize = 64;

/// Who is acting, as the node authenticated it. The state machine turns it
/// into a role when the command applies, from the replicated state: a key
/// revoked or a customer's tokens revoked by an earlier entry are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// The holder of the cluster's admin token: the `admin` role.
    Admin,
    /// A customer with a customer token of token generation `generation`:
    /// may place, pay and cancel its own orders.
    Customer {
        /// The customer's account.
        account: AccountId,
        /// The account's token generation the token was issued in.
        generation: u32,
    },
    /// The cluster itself (the leader's `ExpireDue`).
    System,
    /// The holder of an API key (by its secret or by a client certificate
    /// naming it): the key's role, read from the state at apply time.
    Key(KeyId),
}

impl Principal {
    /// A customer with a token of the first generation (tests, tools).
    pub fn customer(account: AccountId) -> Self {
        Principal::Customer {
            account,
            generation: 0,
        }
    }
}

/// One line of a `PlaceOrder`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineRequest {
    /// The product.
    pub sku: Sku,
    /// Units, 1 to [`LINE_QTY_MAX`] ([`Command::validate`]; the schema
    /// states the type's range, which a batch answers per command).
    #[serde(deserialize_with = "crate::whole::u64")]
    #[schema(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
    pub qty: u64,
}

/// A write to the commerce state. Its schema states each field's type
/// (the range the JSON decodes into); the rules of [`Command::validate`]
/// are checked after decoding, so a batch answers them per command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
// Externally tagged (`{"restock": {...}}`): the same type travels in the
// Raft log as postcard, which cannot decode internally tagged enums.
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Create a product or change its name, price, currency or active flag.
    /// A product's currency cannot change while units are reserved.
    UpsertProduct {
        /// The product.
        sku: Sku,
        /// Display name.
        name: ProductName,
        /// Unit price, 1 to [`PRICE_MAX`].
        price: Minor,
        /// The product's currency.
        currency: Currency,
        /// Whether it can be ordered (default true).
        #[serde(default = "default_true")]
        active: bool,
    },
    /// Add units to `on_hand`.
    Restock {
        /// The product.
        sku: Sku,
        /// Units to add, 1 to [`STOCK_QTY_MAX`].
        #[serde(deserialize_with = "crate::whole::u64")]
        #[schema(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
        qty: u64,
    },
    /// Set `on_hand` to an absolute count (a stock take); refused below reserved.
    SetStock {
        /// The product.
        sku: Sku,
        /// The counted units, up to [`STOCK_QTY_MAX`].
        #[serde(deserialize_with = "crate::whole::u64")]
        #[schema(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
        on_hand: u64,
    },
    /// Open an account with a zero balance.
    OpenAccount {
        /// The new account's id.
        id: AccountId,
        /// Its kind; one merchant and one external account per currency.
        kind: AccountKind,
        /// Its currency.
        currency: Currency,
    },
    /// Credit an account from its currency's external account.
    Deposit {
        /// The credited account.
        account: AccountId,
        /// Amount, 1 to [`DEPOSIT_MAX`].
        amount: Minor,
    },
    /// Reserve every line's units, all or none, and create a `reserved` order.
    PlaceOrder {
        /// The buying customer.
        customer: AccountId,
        /// 1 to [`ORDER_LINES_MAX`] lines.
        lines: Vec<LineRequest>,
        /// Reservation lifetime in seconds (default [`ORDER_TTL_DEFAULT_S`]).
        #[serde(default, deserialize_with = "crate::whole::option_u32")]
        #[schema(minimum = 0, maximum = 4_294_967_295_u32)]
        ttl_seconds: Option<u32>,
    },
    /// Pay a reserved order: customer → merchant, reserved units are sold.
    PayOrder {
        /// The order.
        #[schema(value_type = u64, minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
        order: OrderId,
    },
    /// Cancel a reserved order and release its units.
    CancelOrder {
        /// The order.
        #[schema(value_type = u64, minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
        order: OrderId,
    },
    /// Mark a paid order shipped.
    ShipOrder {
        /// The order.
        #[schema(value_type = u64, minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
        order: OrderId,
    },
    /// Mark a shipped order delivered.
    DeliverOrder {
        /// The order.
        #[schema(value_type = u64, minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
        order: OrderId,
    },
    /// Return a paid or shipped order's money; optionally its units to stock.
    RefundOrder {
        /// The order.
        #[schema(value_type = u64, minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
        order: OrderId,
        /// Return the units to `on_hand`.
        #[serde(default)]
        restock: bool,
    },
    /// Expire reserved orders whose `expires_at` is at or before `now_ms`.
    /// Proposed by the leader; `now_ms` is capped at the entry's own time.
    ExpireDue {
        /// Leader time in ms.
        #[serde(deserialize_with = "crate::whole::u64")]
        #[schema(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
        now_ms: u64,
    },
    /// Create an API key. The node chooses the id and the secret and sends
    /// only the secret's hash; not accepted in a batch.
    CreateKey {
        /// The new key's id.
        id: KeyId,
        /// What the key is for, 1 to `KEY_NAME_LEN_MAX` characters.
        name: String,
        /// What it may do.
        role: Role,
        /// For the `customer` role, its account; none for other roles.
        account: Option<AccountId>,
        /// `identity::secret_hash` of the secret.
        #[schema(value_type = String)]
        secret_hash: [u8; 32],
        /// Lifetime in seconds, up to `KEY_TTL_MAX_S`; none never expires.
        ttl_seconds: Option<u64>,
    },
    /// Revoke (delete) an API key; not accepted in a batch.
    RevokeKey {
        /// The key.
        id: KeyId,
    },
    /// Note the issue of a customer token and learn what to sign: the
    /// account's token generation and the token's expiry. Not accepted in
    /// a batch.
    IssueCustomerToken {
        /// The customer's account.
        account: AccountId,
        /// Lifetime in seconds, 1 to `CUSTOMER_TOKEN_TTL_MAX_S`.
        ttl_seconds: Option<u32>,
    },
    /// Revoke every token issued to an account so far; not accepted in a
    /// batch.
    RevokeCustomerTokens {
        /// The customer's account.
        account: AccountId,
    },
    /// Record an operation the state machine does not perform itself
    /// (membership, compaction, a backup read) in the audit trail; sent by
    /// the node, not accepted in a batch.
    Record {
        /// The operation's name.
        action: String,
        /// Its parameters.
        detail: String,
    },
}

fn default_true() -> bool {
    true
}

impl Command {
    /// Checks every rule that needs no state: ranges, counts, lengths.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Command::UpsertProduct { price, .. } => {
                if price.0 <= 0 || price.0 > PRICE_MAX {
                    return Err(FieldError::new(
                        "price",
                        format!("must be 1 to {PRICE_MAX} minor units"),
                    ));
                }
            }
            Command::Restock { qty, .. } => {
                if *qty == 0 || *qty > STOCK_QTY_MAX {
                    return Err(FieldError::new(
                        "qty",
                        format!("must be 1 to {STOCK_QTY_MAX}"),
                    ));
                }
            }
            Command::SetStock { on_hand, .. } => {
                if *on_hand > STOCK_QTY_MAX {
                    return Err(FieldError::new(
                        "on_hand",
                        format!("must be at most {STOCK_QTY_MAX}"),
                    ));
                }
            }
            Command::Deposit { amount, .. } => {
                if amount.0 <= 0 || amount.0 > DEPOSIT_MAX {
                    return Err(FieldError::new(
                        "amount",
                        format!("must be 1 to {DEPOSIT_MAX} minor units"),
                    ));
                }
            }
            Command::PlaceOrder {
                lines, ttl_seconds, ..
            } => {
                if lines.is_empty() || lines.len() > ORDER_LINES_MAX {
                    return Err(FieldError::new(
                        "lines",
                        format!(
                            "must have 1 to {ORDER_LINES_MAX} lines, got {}",
                            lines.len()
                        ),
                    ));
                }
                if let Some((i, l)) = lines
                    .iter()
                    .enumerate()
                    .find(|(_, l)| l.qty == 0 || l.qty > LINE_QTY_MAX)
                {
                    return Err(FieldError::new(
                        &format!("lines[{i}].qty"),
                        format!("must be 1 to {LINE_QTY_MAX}, got {}", l.qty),
                    ));
                }
                if let Some(t) = ttl_seconds {
                    if *t == 0 || *t > ORDER_TTL_MAX_S {
                        return Err(FieldError::new(
                            "ttl_seconds",
                            format!("must be 1 to {ORDER_TTL_MAX_S}"),
                        ));
                    }
                }
            }
            Command::CreateKey {
                name, ttl_seconds, ..
            } => {
                text_field("name", name, KEY_NAME_LEN_MAX)?;
                if ttl_seconds.is_some_and(|t| t == 0 || t > KEY_TTL_MAX_S) {
                    return Err(FieldError::new(
                        "ttl_seconds",
                        format!("must be 1 to {KEY_TTL_MAX_S}"),
                    ));
                }
            }
            Command::IssueCustomerToken { ttl_seconds, .. } => {
                if ttl_seconds.is_some_and(|t| t == 0 || t > CUSTOMER_TOKEN_TTL_MAX_S) {
                    return Err(FieldError::new(
                        "ttl_seconds",
                        format!("must be 1 to {CUSTOMER_TOKEN_TTL_MAX_S}"),
                    ));
                }
            }
            Command::Record { action, detail } => {
                text_field("action", action, AUDIT_TEXT_LEN_MAX)?;
                if detail.len() > AUDIT_TEXT_LEN_MAX || detail.chars().any(char::is_control) {
                    return Err(FieldError::new(
                        "detail",
                        format!(
                            "must be at most {AUDIT_TEXT_LEN_MAX} bytes without control characters"
                        ),
                    ));
                }
            }
            Command::RevokeKey { .. } | Command::RevokeCustomerTokens { .. } => {}
            Command::OpenAccount { .. }
            | Command::PayOrder { .. }
            | Command::CancelOrder { .. }
            | Command::ShipOrder { .. }
            | Command::DeliverOrder { .. }
            | Command::RefundOrder { .. }
            | Command::ExpireDue { .. } => {}
        }
        Ok(())
    }

    /// The command's name as used in metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::UpsertProduct { .. } => "upsert_product",
            Command::Restock { .. } => "restock",
            Command::SetStock { .. } => "set_stock",
            Command::OpenAccount { .. } => "open_account",
            Command::Deposit { .. } => "deposit",
            Command::PlaceOrder { .. } => "place_order",
            Command::PayOrder { .. } => "pay_order",
            Command::CancelOrder { .. } => "cancel_order",
            Command::ShipOrder { .. } => "ship_order",
            Command::DeliverOrder { .. } => "deliver_order",
            Command::RefundOrder { .. } => "refund_order",
            Command::ExpireDue { .. } => "expire_due",
            Command::CreateKey { .. } => "create_key",
            Command::RevokeKey { .. } => "revoke_key",
            Command::IssueCustomerToken { .. } => "issue_customer_token",
            Command::RevokeCustomerTokens { .. } => "revoke_customer_tokens",
            Command::Record { .. } => "record",
        }
    }

    /// The roles that may apply the command. A customer may besides act
    /// on its own account and orders where [`Command::owner_may`] says so,
    /// and only the cluster (or the admin) expires reservations.
    pub fn writers(&self) -> &'static [Role] {
        match self {
            Command::UpsertProduct { .. } | Command::Restock { .. } | Command::SetStock { .. } => {
                &[Role::Admin, Role::Merchant]
            }
            Command::Record { .. } => &[Role::Admin, Role::Operator],
            Command::OpenAccount { .. }
            | Command::Deposit { .. }
            | Command::PlaceOrder { .. }
            | Command::PayOrder { .. }
            | Command::CancelOrder { .. }
            | Command::ShipOrder { .. }
            | Command::DeliverOrder { .. }
            | Command::RefundOrder { .. }
            | Command::ExpireDue { .. }
            | Command::CreateKey { .. }
            | Command::RevokeKey { .. }
            | Command::IssueCustomerToken { .. }
            | Command::RevokeCustomerTokens { .. } => &[Role::Admin],
        }
    }

    /// True for the commands a customer may send for its own account or
    /// order (the state machine checks the ownership).
    pub fn owner_may(&self) -> bool {
        matches!(
            self,
            Command::PlaceOrder { .. } | Command::PayOrder { .. } | Command::CancelOrder { .. }
        )
    }

    /// The names ([`Command::name`]) of the commands `/v1/batch` refuses:
    /// identities and the audit trail have their own routes.
    pub const NOT_IN_BATCH: [&'static str; 5] = [
        "create_key",
        "revoke_key",
        "issue_customer_token",
        "revoke_customer_tokens",
        "record",
    ];

    /// True for the commands `/v1/batch` accepts: the commerce commands.
    pub fn in_batch(&self) -> bool {
        !Self::NOT_IN_BATCH.contains(&self.name())
    }

    /// What the audit trail records when staff apply the command: its
    /// action and detail, or `None` for the commerce a customer could do
    /// itself (placing, paying, cancelling orders) and for expiry, which
    /// are shop traffic rather than administration.
    pub fn audit_entry(&self) -> Option<(String, String)> {
        let detail = match self {
            Command::PlaceOrder { .. }
            | Command::PayOrder { .. }
            | Command::CancelOrder { .. }
            | Command::ExpireDue { .. } => return None,
            Command::Record { action, detail } => return Some((action.clone(), detail.clone())),
            Command::UpsertProduct {
                sku,
                price,
                currency,
                active,
                ..
            } => format!(
                "sku={sku} price={} currency={currency} active={active}",
                price.0
            ),
            Command::Restock { sku, qty } => format!("sku={sku} qty={qty}"),
            Command::SetStock { sku, on_hand } => format!("sku={sku} on_hand={on_hand}"),
            Command::OpenAccount { id, kind, currency } => {
                format!("account={id} kind={} currency={currency}", kind.as_str())
            }
            Command::Deposit { account, amount } => {
                format!("account={account} amount={}", amount.0)
            }
            Command::ShipOrder { order } | Command::DeliverOrder { order } => {
                format!("order={order}")
            }
            Command::RefundOrder { order, restock } => format!("order={order} restock={restock}"),
            Command::CreateKey {
                id,
                role,
                account,
                ttl_seconds,
                ..
            } => {
                let mut d = format!("key={id} role={}", role.as_str());
                if let Some(a) = account {
                    d.push_str(&format!(" account={a}"));
                }
                if let Some(t) = ttl_seconds {
                    d.push_str(&format!(" ttl_seconds={t}"));
                }
                d
            }
            Command::RevokeKey { id } => format!("key={id}"),
            Command::IssueCustomerToken { account, .. }
            | Command::RevokeCustomerTokens { account } => format!("account={account}"),
        };
        Some((self.name().to_owned(), detail))
    }
}

/// Checks a required short text: 1 to `max` characters, no control
/// character.
fn text_field(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    let n = value.chars().count();
    if n == 0 || n > max || value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(())
}

/// A command with its idempotency key and the principal acting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The idempotency key: at most one effect per key.
    pub request_id: RequestId,
    /// Who is acting.
    pub principal: Principal,
    /// Where the request came from, as the node that took it saw it (at
    /// most [`ORIGIN_LEN_MAX`] bytes; recorded in the audit trail, not part
    /// of the fingerprint: a retry from elsewhere is the same request).
    pub origin: Option<String>,
    /// What to do.
    pub command: Command,
}

impl Envelope {
    /// The fingerprint stored with the key: a hash of principal and command,
    /// so a replay matches only the very same request.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"keel.fingerprint.v1");
        // Encoding a plain serde value into a Vec cannot fail.
        let bytes = postcard::to_stdvec(&(&self.principal, &self.command)).unwrap_or_default();
        h.update(&bytes);
        *h.finalize().as_bytes()
    }
}

/// What one Raft entry carries: commands applied in order, each with an
/// independent result, and the leader's wall-clock time, the only clock the
/// state machine ever sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Leader time when the batch was closed, ms since the Unix epoch.
    pub leader_time_ms: u64,
    /// Up to [`BATCH_COMMANDS_MAX`] commands.
    pub commands: Vec<Envelope>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku() -> Sku {
        Sku::new("A").unwrap()
    }

    #[test]
    fn order_limits_name_the_field() {
        let line = |qty| LineRequest { sku: sku(), qty };
        let place = |lines: Vec<LineRequest>| Command::PlaceOrder {
            customer: AccountId::new("c").unwrap(),
            lines,
            ttl_seconds: None,
        };
        assert_eq!(place(vec![]).validate().unwrap_err().field, "lines");
        assert!(place((0..100).map(|_| line(1)).collect())
            .validate()
            .is_ok());
        assert_eq!(
            place((0..101).map(|_| line(1)).collect())
                .validate()
                .unwrap_err()
                .field,
            "lines"
        );
        assert!(place(vec![line(10_000)]).validate().is_ok());
        assert_eq!(
            place(vec![line(1), line(10_001)])
                .validate()
                .unwrap_err()
                .field,
            "lines[1].qty"
        );
        assert_eq!(
            place(vec![line(0)]).validate().unwrap_err().field,
            "lines[0].qty"
        );
    }

    #[test]
    fn amounts_must_be_positive_and_bounded() {
        let up = |p| Command::UpsertProduct {
            sku: sku(),
            name: ProductName::new("n").unwrap(),
            price: Minor(p),
            currency: Currency::new("EUR").unwrap(),
            active: true,
        };
        assert!(up(0).validate().is_err());
        assert!(up(-5).validate().is_err());
        assert!(up(PRICE_MAX + 1).validate().is_err());
        assert!(up(1).validate().is_ok());
        let dep = |a| Command::Deposit {
            account: AccountId::new("c").unwrap(),
            amount: Minor(a),
        };
        assert!(dep(0).validate().is_err());
        assert!(dep(DEPOSIT_MAX + 1).validate().is_err());
        assert!(Command::Restock { sku: sku(), qty: 0 }.validate().is_err());
    }

    #[test]
    fn fingerprint_differs_by_principal_and_body() {
        let env = |p: Principal, qty| Envelope {
            request_id: RequestId::new("k").unwrap(),
            principal: p,
            origin: None,
            command: Command::Restock { sku: sku(), qty },
        };
        assert_eq!(
            env(Principal::Admin, 1).fingerprint(),
            env(Principal::Admin, 1).fingerprint()
        );
        assert_ne!(
            env(Principal::Admin, 1).fingerprint(),
            env(Principal::Admin, 2).fingerprint()
        );
        assert_ne!(
            env(Principal::Admin, 1).fingerprint(),
            env(Principal::System, 1).fingerprint()
        );
    }

    #[test]
    fn commands_round_trip_through_postcard() {
        let c = Envelope {
            request_id: RequestId::new("k").unwrap(),
            principal: Principal::customer(AccountId::new("c").unwrap()),
            origin: None,
            command: Command::PlaceOrder {
                customer: AccountId::new("c").unwrap(),
                lines: vec![LineRequest { sku: sku(), qty: 2 }],
                ttl_seconds: Some(5),
            },
        };
        let bytes = postcard::to_stdvec(&c).unwrap();
        assert_eq!(postcard::from_bytes::<Envelope>(&bytes).unwrap(), c);
    }

    #[test]
    fn commands_have_a_json_form() {
        let c: Command = serde_json::from_str(r#"{"restock":{"sku":"A","qty":3}}"#).unwrap();
        assert_eq!(c, Command::Restock { sku: sku(), qty: 3 });
        let bad: Result<Command, _> =
            serde_json::from_str(r#"{"restock":{"sku":"bad sku","qty":3}}"#);
        assert!(bad.is_err());
    }
}
