//! Identities and roles over a real three-node cluster with TLS on every
//! link: every route of the route table admits exactly the callers the
//! table names, asked of live nodes; a revoked key and an expired or
//! revoked customer token are refused by every node and by the state
//! machine when a write applies; the audit trail says who did what, from
//! where; and a client certificate from the cluster's CA stands for the
//! API key it names.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_client::{AttemptError, Client, ClientError, HttpMethod};
use keel_domain::{OrderStatus, Role};
use keel_harness::LocalCluster;
use keel_node::http::roles::{Access, ROUTE_ROLES};
use keel_tls::authority::{self, Subject, Validity};
use keel_tls::ClientTls;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READY: Duration = Duration::from_secs(30);
/// How long a node may take to apply what the cluster committed.
const APPLIED: Duration = Duration::from_secs(5);
/// How long a two-second customer token may take to be refused, writes
/// moving the state clock all along.
const EXPIRY: Duration = Duration::from_secs(10);
/// Calls made once a node first answers as expected, to see it holds.
const STAYS_CALLS: usize = 5;

/// The product every test orders and restocks.
const SKU: &str = "SKU-R";
/// A well-formed key id no key has: what an admitted `DELETE
/// /v1/keys/{id}` names, so it revokes nothing.
const NO_SUCH_KEY: &str = "k-0000000000000000";
/// A node id that is not a member: what the admitted membership routes
/// name, so they change nothing.
const NO_SUCH_NODE: u64 = 99;

fn get() -> HttpMethod {
    HttpMethod::GET
}

fn post() -> HttpMethod {
    HttpMethod::POST
}

fn delete() -> HttpMethod {
    HttpMethod::DELETE
}

/// The status and body one call to `endpoint` answers (no retries);
/// panics when no answer comes, which no test here provokes.
async fn call(
    client: &Client,
    endpoint: &str,
    method: HttpMethod,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    match client
        .call_at(endpoint, method.clone(), path, body, None)
        .await
    {
        Ok(r) => (r.status, r.body),
        Err(AttemptError::Problem(ClientError::Problem { status, body, .. })) => (status, body),
        Err(e) => panic!("{method} {path} at {endpoint}: no answer: {e:?}"),
    }
}

async fn status(
    client: &Client,
    endpoint: &str,
    method: HttpMethod,
    path: &str,
    body: Option<&Value>,
) -> u16 {
    call(client, endpoint, method, path, body).await.0
}

/// Polls `endpoint` until `method path` answers `want`, within [`APPLIED`]
/// (a node answers from what it has applied), then checks that it keeps
/// answering `want`.
async fn settles_at(
    client: &Client,
    endpoint: &str,
    method: HttpMethod,
    path: &str,
    body: Option<&Value>,
    want: u16,
) {
    let what = format!("{method} {path} at {endpoint} answering {want}");
    keel_harness::wait_for(&what, APPLIED, &mut || {
        let method = method.clone();
        async move { (status(client, endpoint, method, path, body).await == want).then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..STAYS_CALLS {
        let got = status(client, endpoint, method.clone(), path, body).await;
        assert_eq!(got, want, "{what}: it did not hold");
    }
}

/// A key of `role` made by the admin (a customer key acts for
/// `account`): its id and its token.
async fn create_key(
    admin: &Client,
    name: &str,
    role: Role,
    account: Option<&str>,
) -> (String, String) {
    let body = json!({"name": name, "role": role.as_str(), "account": account});
    let r = admin
        .post("/v1/keys", &body, &format!("create-key-{name}"))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["key"]["role"], role.as_str());
    let id = r.body["key"]["id"].as_str().unwrap().to_owned();
    let token = r.body["token"].as_str().unwrap().to_owned();
    (id, token)
}

/// The shop the tests act on: a merchant and an external account in EUR,
/// customers `alice` and `bob` with money, product [`SKU`] in stock, and
/// one reserved order each.
struct Shop {
    alice_order: u64,
    bob_order: u64,
}

async fn seed(admin: &Client) -> Shop {
    admin
        .open_account("shop", "merchant", "EUR", "seed-shop")
        .await
        .unwrap();
    admin
        .open_account("world", "external", "EUR", "seed-world")
        .await
        .unwrap();
    for who in ["alice", "bob"] {
        admin
            .open_account(who, "customer", "EUR", &format!("seed-{who}"))
            .await
            .unwrap();
        admin
            .deposit(who, 1_000_000, &format!("seed-deposit-{who}"))
            .await
            .unwrap();
    }
    admin
        .upsert_product(SKU, "Role thing", 250, "EUR", "seed-product")
        .await
        .unwrap();
    admin.restock(SKU, 1_000, "seed-restock").await.unwrap();
    let line = [(SKU.to_owned(), 1)];
    let (a, _) = admin
        .place_order("alice", &line, "seed-order-alice")
        .await
        .unwrap();
    let (b, _) = admin
        .place_order("bob", &line, "seed-order-bob")
        .await
        .unwrap();
    Shop {
        alice_order: a.id.0,
        bob_order: b.id.0,
    }
}

/// A ready three-node TLS cluster with the [`Shop`] seeded, and the
/// clients every test starts from.
struct Setup {
    c: LocalCluster,
    admin: Client,
    /// No credential; `with_token` makes every other caller from it.
    anonymous: Client,
    eps: Vec<String>,
    shop: Shop,
    // Dropped after the cluster, whose files it holds.
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let c = common::tls_cluster(dir.path());
    c.wait_ready(READY).await.unwrap();
    let admin = c.admin_client();
    let shop = seed(&admin).await;
    let eps = c.endpoints();
    let anonymous = c.client(eps.clone(), None);
    Setup {
        c,
        admin,
        anonymous,
        eps,
        shop,
        _dir: dir,
    }
}

/// A caller of the matrix: its credential and the role the table knows
/// it by (none: anonymous).
struct Caller {
    name: String,
    client: Client,
    role: Option<Role>,
}

/// Whether the table admits `role` to a route taking `access`, read
/// straight from the table's meaning (not from the node's `admit`).
fn admitted(access: &[Access], role: Option<Role>) -> bool {
    access.iter().any(|a| match (a, role) {
        (Access::Public, _) => true,
        (Access::Owner, Some(r)) => r == Role::Customer,
        (Access::Staff(s), Some(r)) => *s == r,
        (_, None) => false,
    })
}

/// The request the matrix sends to the route `method path`: its path
/// parameters filled with real ids, and a body that does no harm when
/// admitted (`n` keeps the records it creates apart).
fn matrix_request(method: &str, path: &str, shop: &Shop, n: usize) -> (String, Option<Value>) {
    let id = if path.starts_with("/v1/accounts/") {
        // Revoking tokens is done to bob, whose tokens no test uses.
        if method == "delete" { "bob" } else { "alice" }.to_owned()
    } else if path.starts_with("/v1/orders/") {
        shop.alice_order.to_string()
    } else if path.starts_with("/v1/keys/") {
        NO_SUCH_KEY.to_owned()
    } else if path.starts_with("/v1/cluster/members/") {
        NO_SUCH_NODE.to_string()
    } else {
        String::new()
    };
    let mut filled = path.replace("{sku}", SKU).replace("{id}", &id);
    assert!(
        !filled.contains('{'),
        "{method} {path}: a path parameter this test does not fill"
    );
    if path == "/v1/backup/log" {
        filled.push_str("?after=0");
    }
    let body = match (method, path) {
        ("post", "/v1/products") => Some(json!({
            "sku": SKU, "name": "Role thing", "price": 250, "currency": "EUR"
        })),
        ("post", "/v1/products/{sku}/restock") => Some(json!({"qty": 1})),
        ("put", "/v1/products/{sku}/stock") => Some(json!({"on_hand": 1_000})),
        ("post", "/v1/accounts") => Some(json!({
            "id": format!("matrix-{n}"), "kind": "customer", "currency": "EUR"
        })),
        ("post", "/v1/accounts/{id}/deposits") => Some(json!({"amount": 100})),
        ("post", "/v1/orders") => Some(json!({
            "customer": "alice", "lines": [{"sku": SKU, "qty": 1}]
        })),
        ("post", "/v1/batch") => Some(json!([])),
        // Refused as malformed once admitted: no learner is added.
        ("post", "/v1/cluster/learners") => Some(json!({
            "id": NO_SUCH_NODE, "addr": "not an address"
        })),
        ("post", "/v1/cluster/members") => Some(json!({"id": NO_SUCH_NODE})),
        // Refused once admitted: no such voter, so leadership stays put.
        ("post", "/v1/cluster/leader") => Some(json!({"to": NO_SUCH_NODE})),
        ("post", "/v1/keys") => Some(json!({"name": format!("matrix-{n}"), "role": "support"})),
        ("post", _) => Some(json!({})),
        _ => None,
    };
    (filled, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_admits_exactly_the_roles_its_table_names() {
    // Every field bound: one left out would be dropped here, the
    // cluster or its directory with it.
    let Setup {
        c,
        admin,
        anonymous,
        eps,
        shop,
        _dir,
    } = setup().await;

    let mut callers = vec![
        Caller {
            name: "anonymous".into(),
            client: anonymous.with_token(None),
            role: None,
        },
        Caller {
            name: "admin token".into(),
            client: anonymous.with_token(Some(c.admin_token().to_owned())),
            role: Some(Role::Admin),
        },
    ];
    for role in Role::ALL {
        let account = (role == Role::Customer).then_some("alice");
        let name = format!("{}-key", role.as_str());
        let (_, token) = create_key(&admin, &name, role, account).await;
        callers.push(Caller {
            name,
            client: anonymous.with_token(Some(token)),
            role: Some(role),
        });
    }
    let issued = admin
        .post("/v1/accounts/alice/token", &json!({}), "token-alice")
        .await
        .unwrap();
    let alice_token = issued.body["token"].as_str().unwrap().to_owned();
    callers.push(Caller {
        name: "alice's customer token".into(),
        client: anonymous.with_token(Some(alice_token)),
        role: Some(Role::Customer),
    });
    // Every node admits by its own applied state: each must know every
    // credential before the matrix asks it.
    for caller in &callers[1..] {
        for ep in &eps {
            settles_at(&caller.client, ep, get(), "/v1/whoami", None, 200).await;
        }
    }

    let mut wrong = Vec::new();
    let mut asked = 0;
    for (r, (method, path, access)) in ROUTE_ROLES.iter().enumerate() {
        let http_method = HttpMethod::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        for (k, caller) in callers.iter().enumerate() {
            let n = r * callers.len() + k;
            let (filled, body) = matrix_request(method, path, &shop, n);
            // Each node in turn, so every node's admission is asked.
            let ep = &eps[n % eps.len()];
            let got = status(
                &caller.client,
                ep,
                http_method.clone(),
                &filled,
                body.as_ref(),
            )
            .await;
            asked += 1;
            let ok = if admitted(access, caller.role) {
                got != 401 && got != 403
            } else if caller.role.is_none() {
                got == 401
            } else {
                got == 403
            };
            if !ok {
                let expected = match (admitted(access, caller.role), caller.role) {
                    (true, _) => "admitted (not 401/403)",
                    (false, None) => "401",
                    (false, Some(_)) => "403",
                };
                wrong.push(format!(
                    "{method} {filled} as {} at {ep}: expected {expected}, got {got}",
                    caller.name
                ));
            }
        }
    }
    assert_eq!(asked, ROUTE_ROLES.len() * callers.len());
    assert!(
        wrong.is_empty(),
        "admission differs from the table:\n{}",
        wrong.join("\n")
    );

    // A customer, by token or by key, acts on its own account and orders
    // only: bob's are forbidden to alice on every owner route.
    let bob_order = shop.bob_order;
    let owner_routes = [
        (get(), "/v1/accounts/bob".to_owned(), None),
        (get(), "/v1/accounts/bob/orders".to_owned(), None),
        (get(), format!("/v1/orders/{bob_order}"), None),
        (
            post(),
            "/v1/orders".to_owned(),
            Some(json!({"customer": "bob", "lines": [{"sku": SKU, "qty": 1}]})),
        ),
        (
            post(),
            format!("/v1/orders/{bob_order}/pay"),
            Some(json!({})),
        ),
        (
            post(),
            format!("/v1/orders/{bob_order}/cancel"),
            Some(json!({})),
        ),
    ];
    let alices: Vec<&Caller> = callers
        .iter()
        .filter(|c| c.role == Some(Role::Customer))
        .collect();
    assert_eq!(alices.len(), 2, "alice's key and alice's token");
    for alice in alices {
        for (i, (method, path, body)) in owner_routes.iter().enumerate() {
            let ep = &eps[i % eps.len()];
            let got = status(&alice.client, ep, method.clone(), path, body.as_ref()).await;
            assert_eq!(got, 403, "{method} {path} as {} at {ep}", alice.name);
        }
    }
    // Nothing of that reached bob's order.
    let order = admin.order(bob_order).await.unwrap();
    assert_eq!(order.status, OrderStatus::Reserved);
    let (_, bobs) = call(&admin, &eps[0], get(), "/v1/accounts/bob/orders", None).await;
    assert_eq!(bobs["items"].as_array().unwrap().len(), 1, "{bobs}");
}

/// A restock of five with `token` at node `endpoint`, whose head is sent
/// now and whose body only once `between` has run: the node admits the
/// credential on the head (its middleware runs before the body is read),
/// so what `between` does to the credential meets the write only in the
/// state machine, when it applies. The status and problem it answers.
async fn restock_held_open(
    tls: &ClientTls,
    endpoint: &str,
    token: &str,
    between: impl Future<Output = ()>,
) -> (u16, Value) {
    let body = br#"{"qty":5}"#;
    let head = format!(
        "POST /v1/products/{SKU}/restock HTTP/1.1\r\nhost: {endpoint}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let tcp = tokio::net::TcpStream::connect(endpoint).await.unwrap();
    let mut s = tls.connect(keel_tls::host_of(endpoint), tcp).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    between.await;
    s.write_all(body).await.unwrap();
    s.flush().await.unwrap();
    // Read to the close the head asked for (an unclean close ends it too).
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            reply.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&reply);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    let json = match (text.find('{'), text.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&text[a..=b]).unwrap(),
        _ => Value::Null,
    };
    (status, json)
}

/// The stock of [`SKU`] as node `endpoint` reads it (linearizable).
async fn stock(admin: &Client, endpoint: &str) -> Value {
    let (s, body) = call(admin, endpoint, get(), &format!("/v1/products/{SKU}"), None).await;
    assert_eq!(s, 200, "{body}");
    body["stock"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_and_expired_credentials_are_refused_everywhere_and_the_audit_trail_tells_who() {
    let Setup {
        c,
        admin,
        anonymous,
        eps,
        shop: _,
        _dir,
    } = setup().await;
    let restock_path = format!("/v1/products/{SKU}/restock");
    let five = json!({"qty": 5});

    // A merchant key restocks through node 1.
    let (merchant_id, merchant_token) = create_key(&admin, "stock-bot", Role::Merchant, None).await;
    let merchant = anonymous.with_token(Some(merchant_token.clone()));
    settles_at(&merchant, &eps[0], get(), "/v1/whoami", None, 200).await;
    let (s, body) = call(&merchant, &eps[0], post(), &restock_path, Some(&five)).await;
    assert_eq!(s, 200, "{body}");
    let before = stock(&admin, &eps[0]).await;

    // Revoked through node 2 while node 3 holds a restock with it that it
    // has admitted: the state machine refuses that write at its log
    // position, after the revocation, with its own reason (which names
    // the key; the nodes' credential check does not).
    let revoke = async {
        let path = format!("/v1/keys/{merchant_id}");
        let (s, body) = call(&admin, &eps[1], delete(), &path, None).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["id"], merchant_id.as_str());
        settles_at(&merchant, &eps[2], get(), "/v1/whoami", None, 401).await;
    };
    let raw = ClientTls::anonymous(c.tls().unwrap().bundle()).unwrap();
    let (s, refused) = restock_held_open(&raw, &eps[2], &merchant_token, revoke).await;
    assert_eq!(s, 401, "{refused}");
    assert_eq!(refused["type"], "unauthorized", "{refused}");
    let reason = refused["detail"].as_str().unwrap();
    assert!(
        reason.contains(&format!("key {merchant_id}")),
        "not the state machine's refusal: {refused}"
    );
    // And at once, a restock with it at every node.
    let (a, b, d) = tokio::join!(
        status(&merchant, &eps[0], post(), &restock_path, Some(&five)),
        status(&merchant, &eps[1], post(), &restock_path, Some(&five)),
        status(&merchant, &eps[2], post(), &restock_path, Some(&five)),
    );
    assert_eq!([a, b, d], [401, 401, 401], "a restock with a revoked key");
    for ep in &eps {
        settles_at(&merchant, ep, post(), &restock_path, Some(&five), 401).await;
        settles_at(&merchant, ep, get(), "/v1/whoami", None, 401).await;
    }
    for ep in &eps {
        assert_eq!(
            stock(&admin, ep).await,
            before,
            "the revoked key moved stock"
        );
    }

    // A customer token of two seconds works, then is refused on every
    // node once the state clock, moved by writes, passes its expiry.
    let (s, body) = call(
        &admin,
        &eps[0],
        post(),
        "/v1/accounts/alice/token?ttl_seconds=2",
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let short = anonymous.with_token(Some(body["token"].as_str().unwrap().to_owned()));
    assert_eq!(
        status(&short, &eps[0], get(), "/v1/accounts/alice", None).await,
        200
    );
    let deposit = json!({"amount": 1});
    keel_harness::wait_for("the short token refused on every node", EXPIRY, &mut || {
        let (admin, short, eps, deposit) = (&admin, &short, &eps, &deposit);
        async move {
            admin
                .call(post(), "/v1/accounts/bob/deposits", Some(deposit), None)
                .await
                .unwrap();
            for ep in eps {
                if status(short, ep, get(), "/v1/accounts/alice", None).await != 401 {
                    return None;
                }
            }
            Some(())
        }
    })
    .await
    .unwrap();
    for ep in &eps {
        settles_at(&short, ep, get(), "/v1/accounts/alice", None, 401).await;
    }

    // Revoking alice's tokens refuses one issued before on every node,
    // writes included; one issued after works on every node.
    let issue = |key: &'static str| {
        let (admin, anonymous) = (&admin, &anonymous);
        async move {
            let r = admin
                .post("/v1/accounts/alice/token", &json!({}), key)
                .await
                .unwrap();
            anonymous.with_token(Some(r.body["token"].as_str().unwrap().to_owned()))
        }
    };
    let old = issue("token-before-revocation").await;
    for ep in &eps {
        settles_at(&old, ep, get(), "/v1/accounts/alice", None, 200).await;
    }
    let (s, body) = call(&admin, &eps[2], delete(), "/v1/accounts/alice/token", None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["account"], "alice");
    assert_eq!(body["generation"], 1);
    let order = json!({"customer": "alice", "lines": [{"sku": SKU, "qty": 1}]});
    let (a, b, d) = tokio::join!(
        status(&old, &eps[0], post(), "/v1/orders", Some(&order)),
        status(&old, &eps[1], post(), "/v1/orders", Some(&order)),
        status(&old, &eps[2], post(), "/v1/orders", Some(&order)),
    );
    assert_eq!([a, b, d], [401, 401, 401], "an order with a revoked token");
    let new = issue("token-after-revocation").await;
    for ep in &eps {
        settles_at(&old, ep, get(), "/v1/accounts/alice", None, 401).await;
        settles_at(&new, ep, get(), "/v1/accounts/alice", None, 200).await;
    }

    // The audit trail, newest first: who did each of those, as what, from
    // where, and how it ended. Support may read it; no one anonymous.
    let (_, support_token) = create_key(&admin, "helpdesk", Role::Support, None).await;
    let support = anonymous.with_token(Some(support_token));
    settles_at(&support, &eps[0], get(), "/v1/whoami", None, 200).await;
    let (s, page) = call(&support, &eps[0], get(), "/v1/audit?limit=500", None).await;
    assert_eq!(s, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let seqs: Vec<u64> = items.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {seqs:?}"
    );
    let at = |action: &str, actor: &str, detail: &str| {
        items
            .iter()
            .position(|i| {
                i["action"] == action
                    && i["actor"] == actor
                    && i["detail"].as_str().unwrap().contains(detail)
            })
            .unwrap_or_else(|| panic!("no {action} by {actor} ({detail}) in {page}"))
    };
    let key_actor = format!("key:{merchant_id}");
    let key_detail = format!("key={merchant_id}");
    let created = at("create_key", "admin-token", &key_detail);
    let restocked = at("restock", &key_actor, &format!("sku={SKU}"));
    let revoked = at("revoke_key", "admin-token", &key_detail);
    let tokens_revoked = at("revoke_customer_tokens", "admin-token", "account=alice");
    assert!(
        tokens_revoked < revoked && revoked < restocked && restocked < created,
        "out of order: {page}"
    );
    for i in [created, restocked, revoked, tokens_revoked] {
        let rec = &items[i];
        assert_eq!(rec["outcome"], "ok", "{rec}");
        assert!(!rec["origin"].as_str().unwrap().is_empty(), "{rec}");
    }
    assert_eq!(items[created]["role"], "admin");
    assert_eq!(items[restocked]["role"], "merchant");
    // Only the one restock the key made while live: the refused ones never
    // resolved to an actor.
    let by_key = items
        .iter()
        .filter(|i| i["actor"] == key_actor.as_str())
        .count();
    assert_eq!(by_key, 1, "{page}");
    assert_eq!(
        status(&anonymous, &eps[1], get(), "/v1/audit", None).await,
        401
    );
    assert_eq!(status(&new, &eps[2], get(), "/v1/audit", None).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_certificate_from_the_cluster_ca_stands_for_the_key_it_names() {
    let Setup {
        c,
        admin,
        anonymous: _,
        eps,
        shop: _,
        _dir,
    } = setup().await;
    let (key_id, _) = create_key(&admin, "ops-tool", Role::Operator, None).await;

    // A certificate as `keel certs client --name <key id>` issues it.
    let ca = c.tls().unwrap().dir().to_owned();
    let out = tempfile::tempdir().unwrap();
    let certificate = |name: &str| {
        let req = authority::Request {
            subject: Subject::Client { name: name.into() },
            dns_names: Vec::new(),
            ips: Vec::new(),
            validity: Validity::from_now(Duration::from_secs(3_600)),
        };
        let files = authority::issue(&ca, &req, out.path()).unwrap();
        let tls = Arc::new(ClientTls::with_identity(files).unwrap());
        // No bearer token: the certificate is the credential.
        Client::with_tls(eps.clone(), None, tls)
    };
    let by_cert = certificate(&key_id);
    for ep in &eps {
        settles_at(&by_cert, ep, get(), "/v1/whoami", None, 200).await;
        let (_, me) = call(&by_cert, ep, get(), "/v1/whoami", None).await;
        assert_eq!(me["principal"], format!("key:{key_id}"), "{me}");
        assert_eq!(me["role"], "operator", "{me}");
        assert_eq!(status(&by_cert, ep, get(), "/v1/cluster", None).await, 200);
        let product = json!({"sku": SKU, "name": "Role thing", "price": 250, "currency": "EUR"});
        let got = status(&by_cert, ep, post(), "/v1/products", Some(&product)).await;
        assert_eq!(
            got, 403,
            "an operator's certificate wrote the catalogue at {ep}"
        );
    }

    // A certificate naming no key is refused; so is one whose key was
    // revoked, on every node.
    let stranger = certificate(NO_SUCH_KEY);
    for ep in &eps {
        assert_eq!(status(&stranger, ep, get(), "/v1/whoami", None).await, 401);
    }
    let r = admin
        .call(delete(), &format!("/v1/keys/{key_id}"), None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for ep in &eps {
        settles_at(&by_cert, ep, get(), "/v1/whoami", None, 401).await;
        settles_at(&by_cert, ep, get(), "/v1/cluster", None, 401).await;
    }
}
