//! Property tests: random interleavings of every command, with retries under
//! the same key (same and different bodies) and leader time jumps past
//! expiry. After every batch the invariants hold, and replaying the same log
//! into fresh tables gives an identical state digest.

#![allow(clippy::unwrap_used)] // Test file: a failed unwrap is a failed test.

use keel_domain::command::Batch;
use keel_domain::query::digest;
use keel_domain::{
    apply_batch, check_invariants, AccountId, AccountKind, Command, Currency, Envelope,
    LineRequest, MemTables, Minor, OrderId, Principal, ProductName, RequestId, Sku,
};
use proptest::prelude::*;

const SKUS: [&str; 3] = ["A", "B", "U"];
const CUSTOMERS: [&str; 3] = ["c1", "c2", "u1"];

fn setup() -> Vec<Envelope> {
    let eur = Currency::new("EUR").unwrap();
    let usd = Currency::new("USD").unwrap();
    let mut v = Vec::new();
    let mut n = 0;
    let mut push = |p: Principal, c: Command| {
        n += 1;
        v.push(Envelope {
            request_id: RequestId::new(format!("setup-{n}")).unwrap(),
            principal: p,
            command: c,
        });
    };
    for (id, kind, cur) in [
        ("shop", AccountKind::Merchant, eur),
        ("world", AccountKind::External, eur),
        ("shop-us", AccountKind::Merchant, usd),
        ("world-us", AccountKind::External, usd),
        ("c1", AccountKind::Customer, eur),
        ("c2", AccountKind::Customer, eur),
        ("u1", AccountKind::Customer, usd),
    ] {
        push(
            Principal::Admin,
            Command::OpenAccount {
                id: AccountId::new(id).unwrap(),
                kind,
                currency: cur,
            },
        );
    }
    for (sku, cur) in [("A", eur), ("B", eur), ("U", usd)] {
        push(
            Principal::Admin,
            Command::UpsertProduct {
                sku: Sku::new(sku).unwrap(),
                name: ProductName::new(sku).unwrap(),
                price: Minor(150),
                currency: cur,
                active: true,
            },
        );
    }
    v
}

fn arb_command() -> impl Strategy<Value = (Principal, Command)> {
    let sku = prop::sample::select(SKUS.to_vec()).prop_map(|s| Sku::new(s).unwrap());
    let cust = prop::sample::select(CUSTOMERS.to_vec()).prop_map(|s| AccountId::new(s).unwrap());
    let order = (1u64..12).prop_map(OrderId);
    let admin = Just(Principal::Admin);
    prop_oneof![
        (sku.clone(), 1u64..20)
            .prop_map(|(sku, qty)| (Principal::Admin, Command::Restock { sku, qty })),
        (sku.clone(), 0u64..30)
            .prop_map(|(sku, on_hand)| (Principal::Admin, Command::SetStock { sku, on_hand })),
        (sku.clone(), any::<bool>(), 1i64..500).prop_map(|(sku, active, p)| {
            let cur = if sku.as_str() == "U" { "USD" } else { "EUR" };
            (
                Principal::Admin,
                Command::UpsertProduct {
                    sku,
                    name: ProductName::new("x").unwrap(),
                    price: Minor(p),
                    currency: Currency::new(cur).unwrap(),
                    active,
                },
            )
        }),
        (cust.clone(), 1i64..2_000).prop_map(|(account, a)| (
            Principal::Admin,
            Command::Deposit {
                account,
                amount: Minor(a)
            }
        )),
        (
            cust.clone(),
            prop::collection::vec((sku, 1u64..6), 1..4),
            prop::option::of(1u32..120),
            any::<bool>()
        )
            .prop_map(|(customer, lines, ttl, as_owner)| {
                let p = if as_owner {
                    Principal::Customer(customer.clone())
                } else {
                    Principal::Admin
                };
                let lines = lines
                    .into_iter()
                    .map(|(sku, qty)| LineRequest { sku, qty })
                    .collect();
                (
                    p,
                    Command::PlaceOrder {
                        customer,
                        lines,
                        ttl_seconds: ttl,
                    },
                )
            }),
        (order.clone(), prop::option::of(cust)).prop_map(|(order, c)| (
            c.map_or(Principal::Admin, Principal::Customer),
            Command::PayOrder { order }
        )),
        order
            .clone()
            .prop_map(|order| (Principal::Admin, Command::CancelOrder { order })),
        order
            .clone()
            .prop_map(|order| (Principal::Admin, Command::ShipOrder { order })),
        order
            .clone()
            .prop_map(|order| (Principal::Admin, Command::DeliverOrder { order })),
        (order, any::<bool>()).prop_map(|(order, restock)| (
            Principal::Admin,
            Command::RefundOrder { order, restock }
        )),
        (admin, 0u64..400_000).prop_map(|(p, t)| (p, Command::ExpireDue { now_ms: t })),
    ]
}

/// A step: a fresh command, or a retry of an earlier key with the same or a
/// different body; plus how far leader time moves before its batch.
#[derive(Debug, Clone)]
enum Step {
    Fresh(Principal, Command),
    RetrySame(usize),
    RetryOther(usize, Principal, Command),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => arb_command().prop_map(|(p, c)| Step::Fresh(p, c)),
        2 => any::<prop::sample::Index>().prop_map(|i| Step::RetrySame(i.index(1 << 20))),
        1 => (any::<prop::sample::Index>(), arb_command()).prop_map(|(i, (p, c))| Step::RetryOther(i.index(1 << 20), p, c)),
    ]
}

fn build_log(batches: Vec<(u64, Vec<Step>)>) -> Vec<Batch> {
    let mut log = vec![Batch {
        leader_time_ms: 1_000,
        commands: setup(),
    }];
    let mut sent: Vec<Envelope> = Vec::new();
    let mut time = 1_000;
    let mut n = 0;
    for (jump, steps) in batches {
        time += jump;
        let mut cmds = Vec::new();
        for s in steps {
            let env = match s {
                Step::Fresh(p, c) => {
                    n += 1;
                    Envelope {
                        request_id: RequestId::new(format!("r{n}")).unwrap(),
                        principal: p,
                        command: c,
                    }
                }
                Step::RetrySame(i) if !sent.is_empty() => sent[i % sent.len()].clone(),
                Step::RetryOther(i, p, c) if !sent.is_empty() => Envelope {
                    request_id: sent[i % sent.len()].request_id.clone(),
                    principal: p,
                    command: c,
                },
                _ => continue,
            };
            sent.push(env.clone());
            cmds.push(env);
        }
        log.push(Batch {
            leader_time_ms: time,
            commands: cmds,
        });
    }
    log
}

fn arb_log() -> impl Strategy<Value = Vec<Batch>> {
    // Time jumps up to 3 minutes: past the 1..120 s reservations.
    prop::collection::vec(
        (0u64..180_000, prop::collection::vec(arb_step(), 0..16)),
        1..10,
    )
    .prop_map(build_log)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_after_every_batch_and_replay_is_identical(log in arb_log()) {
        let mut t = MemTables::new();
        for b in &log {
            let results = apply_batch(&mut t, b).unwrap();
            prop_assert_eq!(results.len(), b.commands.len());
            let v = check_invariants(&t).unwrap();
            prop_assert!(v.is_empty(), "violations: {:?}", v);
        }
        let mut replay = MemTables::new();
        for b in &log {
            apply_batch(&mut replay, b).unwrap();
        }
        prop_assert_eq!(digest(&t).unwrap(), digest(&replay).unwrap());
    }

    #[test]
    fn replaying_requests_changes_nothing(log in arb_log()) {
        let mut t = MemTables::new();
        for b in &log {
            apply_batch(&mut t, b).unwrap();
        }
        let before = digest(&t).unwrap();
        // Every request again, exactly as sent, at the same leader time as
        // the last batch (so no idempotency record has aged out).
        let last_time = log.last().map_or(0, |b| b.leader_time_ms);
        let again: Vec<Envelope> = log.iter().flat_map(|b| b.commands.clone()).collect();
        // The original results of each key, to compare with the replays.
        let mut first = std::collections::BTreeMap::new();
        let mut scratch = MemTables::new();
        for b in &log {
            for (env, r) in b.commands.iter().zip(apply_batch(&mut scratch, b).unwrap()) {
                if !r.replayed && !matches!(r.result, Err(keel_domain::DomainError::IdempotencyConflict { .. })) {
                    first.entry(env.request_id.clone()).or_insert((env.fingerprint(), r.result));
                }
            }
        }
        for chunk in again.chunks(1_000) {
            let out = apply_batch(&mut t, &Batch { leader_time_ms: last_time, commands: chunk.to_vec() }).unwrap();
            for (env, r) in chunk.iter().zip(out) {
                let (fp, res) = &first[&env.request_id];
                if *fp == env.fingerprint() {
                    prop_assert!(r.replayed);
                    prop_assert_eq!(&r.result, res);
                }
            }
        }
        prop_assert_eq!(before, digest(&t).unwrap());
    }
}
