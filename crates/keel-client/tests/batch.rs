//! `Client::batch` against a real HTTP server on a real socket that answers
//! `/v1/batch` the way a node does while its leader changes: some commands
//! refused for the moment (503), the rest applied and replayed on a resend.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use keel_client::{Client, ClientError, BATCH_RESENDS_MAX};
use serde_json::{json, Value};

/// How the scripted node answers: the first `unavailable_for` posts refuse
/// the last command with 503, and every post refuses it with `status` when
/// that is set.
struct Script {
    posts: AtomicUsize,
    unavailable_for: usize,
    status: Option<u16>,
}

async fn batch(State(s): State<Arc<Script>>, Json(cmds): Json<Vec<Value>>) -> Json<Value> {
    let n = s.posts.fetch_add(1, Ordering::SeqCst);
    let last = cmds.len() - 1;
    let results: Vec<Value> = (0..cmds.len())
        .map(|i| match (i == last, s.status) {
            (true, Some(st)) => json!({"status": st, "body": {"type": "refused"}}),
            (true, None) if n < s.unavailable_for => {
                json!({"status": 503, "body": {"type": "unavailable"}})
            }
            _ => json!({"status": 200, "body": {"ok": i}}),
        })
        .collect();
    Json(json!({ "results": results }))
}

async fn serve(script: Script) -> (Client, Arc<Script>) {
    let script = Arc::new(script);
    let app = Router::new()
        .route("/v1/batch", post(batch))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Client::new(vec![addr.to_string()], None), script)
}

fn cmds() -> Vec<Value> {
    vec![json!({"a": 1}), json!({"b": 2}), json!({"c": 3})]
}

#[tokio::test]
async fn a_batch_refused_for_the_moment_is_sent_again_until_all_applied() {
    let (client, script) = serve(Script {
        posts: AtomicUsize::new(0),
        unavailable_for: 2,
        status: None,
    })
    .await;
    let r = client.batch(&cmds(), "k").await.unwrap();
    assert_eq!(script.posts.load(Ordering::SeqCst), 3);
    assert_eq!(r.body["results"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_command_refused_for_what_it_is_ends_the_batch_at_once() {
    let (client, script) = serve(Script {
        posts: AtomicUsize::new(0),
        unavailable_for: 0,
        status: Some(409),
    })
    .await;
    match client.batch(&cmds(), "k").await {
        Err(ClientError::BatchRefused {
            refused,
            total,
            first,
        }) => {
            assert_eq!((refused, total), (1, 3));
            assert!(first.starts_with("409"), "{first}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(script.posts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn resends_stop_at_their_limit() {
    let (client, script) = serve(Script {
        posts: AtomicUsize::new(0),
        unavailable_for: usize::MAX,
        status: None,
    })
    .await;
    let r = client.batch(&cmds(), "k").await;
    assert!(
        matches!(r, Err(ClientError::BatchRefused { refused: 1, .. })),
        "{r:?}"
    );
    assert_eq!(
        script.posts.load(Ordering::SeqCst),
        1 + BATCH_RESENDS_MAX as usize
    );
}
