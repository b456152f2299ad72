//! Credentials and listeners (issue 17 item 9). A node takes a user's call (one carrying
//! `x-user-id`) only with the region's internal token, never with the admin token, and
//! takes admin calls (deposits) only with the admin token. The gateway's public listener
//! answers 404 for `/admin/*` and `/metrics`; its admin listener serves them, and no
//! `/v1/*`. An admin's approve, complete or reject of a withdrawal names its owner: another
//! user's withdrawal is refused and nothing changes.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const ADMIN: (&str, &str) = ("x-admin-token", ADMIN_TOKEN);
const INTERNAL: (&str, &str) = ("x-internal-token", INTERNAL_TOKEN);

async fn cluster() -> Cluster {
    let c = Cluster::start(1, |_| {});
    if let Err(e) = wait_healthy(&c.gw, Duration::from_secs(60)).await {
        c.dump_logs();
        panic!("not healthy: {e}");
    }
    c
}

/// The address of the (only) node of `module`.
fn node_of(c: &Cluster, module: engine_config::Module) -> String {
    let n = c.node_cfgs.iter().find(|n| n.module == module).expect("a node of the module");
    format!("http://{}", n.listen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_takes_user_calls_only_with_the_internal_token() {
    let c = cluster().await;
    let wallet = node_of(&c, engine_config::Module::Wallet);
    let matching = node_of(&c, engine_config::Module::Matching);
    let user = ("x-user-id", "31");
    let w = |cid: &str| json!({"client_id": cid, "asset": "USD", "amount_minor": 1});
    let order = json!({"market": "BTC-USD", "client_order_id": "o1", "side": "buy", "type": "limit", "price_ticks": 100, "qty_lots": 1});
    let batch = json!({"orders": [{"user_id": 31, "order": order}]});
    for (name, headers) in
        [("admin token", vec![ADMIN, user]), ("no credential", vec![user]), ("wrong token", vec![("x-internal-token", "nope"), user])]
    {
        let (s, v) = post(&wallet, "/v1/withdrawals", &headers, w("w-refused")).await;
        assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")), "withdrawal with {name}: {v}");
        let (s, v) = post(&matching, "/v1/orders", &headers, order.clone()).await;
        assert_eq!(s, 401, "order with {name}: {v}");
        let (s, v) = post(&matching, "/v1/orders/batch", &headers, batch.clone()).await;
        assert_eq!(s, 401, "order batch with {name}: {v}");
    }
    let (s, v) = post(&wallet, "/v1/withdrawals", &[INTERNAL, user], w("w-ok")).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("rejected")), "the internal token is accepted (no funds: rejected): {v}");
    // The internal token does not mint: deposits are admin calls.
    let dep = json!({"deposit_id": "mint", "user_id": 31, "asset": "USD", "amount_minor": 1000});
    let (s, v) = post(&wallet, "/v1/deposits", &[INTERNAL], dep.clone()).await;
    assert_eq!(s, 401, "deposit with the internal token: {v}");
    let (s, v) = post(&wallet, "/v1/deposits", &[ADMIN], dep).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("credited")), "deposit with the admin token: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_only_on_the_admin_listener() {
    let c = cluster().await;
    let admin = admin_url(&c.gw);
    assert_ne!(admin, c.gw, "the gateway has a separate admin listener");
    let calls = [
        ("/admin/users", json!({"user_id": 41})),
        ("/admin/deposits", json!({"deposit_id": "pub", "user_id": 41, "asset": "USD", "amount_minor": 5})),
        ("/admin/withdrawals/1/approve", json!({"user_id": 41})),
        ("/admin/otc/reference", json!({"market": "BTC-USD", "price_ticks": 1000})),
        ("/admin/mode", json!({"mode": "active"})),
        ("/admin/reconcile", json!({})),
    ];
    for (path, body) in &calls {
        let (s, v) = post(&c.gw, path, &[ADMIN], body.clone()).await;
        assert_eq!(s, 404, "public {path}: {}", v["error"]);
    }
    let r = http().get(format!("{}/metrics", c.gw)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "public /metrics");
    let (s, v) = post(&admin, "/admin/users", &[INTERNAL], json!({"user_id": 41})).await;
    assert_eq!(s, 401, "the internal token is no admin credential: {v}");
    let (s, v) = post(&admin, "/admin/users", &[ADMIN], json!({"user_id": 41})).await;
    assert_eq!(s, 200, "admin listener: {v}");
    let key = v["api_key"].as_str().unwrap().to_string();
    let (s, v) = post(&admin, "/admin/deposits", &[ADMIN], calls[1].1.clone()).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("credited")), "{v}");
    let r = http().get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "admin /metrics");
    assert!(r.text().await.unwrap().contains("engine_gateway_healthy"));
    let (s, _) = get(&admin, "/v1/balances", &[("x-api-key", &key)]).await;
    assert_eq!(s, 404, "no public API on the admin listener");
    let (s, v) = get(&c.gw, "/v1/balances", &[("x-api-key", &key)]).await;
    assert_eq!((s, &v["balances"][0]["available_minor"]), (200, &json!(5)), "{v}");
    let (s, _) = get(&c.gw, "/health", &[]).await;
    assert_eq!(s, 200);
}

/// `(available, held)` of `asset` for the user of `key`.
async fn balance(gw: &str, key: &str, asset: &str) -> (i64, i64) {
    let (s, v) = get(gw, "/v1/balances", &[("x-api-key", key)]).await;
    assert_eq!(s, 200, "{v}");
    let b = v["balances"].as_array().unwrap().iter().find(|b| b["asset"] == asset).cloned().unwrap_or(Value::Null);
    (b["available_minor"].as_i64().unwrap_or(0), b["held_minor"].as_i64().unwrap_or(0))
}

async fn action(gw: &str, id: i64, action: &str, user_id: i64) -> (u16, Value) {
    post(&admin_url(gw), &format!("/admin/withdrawals/{id}/{action}"), &[ADMIN], json!({"user_id": user_id})).await
}

/// Every step named with another user is refused (403 `wrong_owner`) and changes nothing.
async fn refused_for_other(gw: &str, id: i64, key: &str, other: i64, status: &str, funds: (i64, i64)) {
    for step in ["approve", "complete", "reject"] {
        let (s, v) = action(gw, id, step, other).await;
        assert_eq!((s, v["error"].as_str()), (403, Some("wrong_owner")), "{step} as user {other}: {v}");
        let (s, w) = get(gw, &format!("/v1/withdrawals/{id}"), &[("x-api-key", key)]).await;
        assert_eq!((s, w["status"].as_str()), (200, Some(status)), "after {step} as user {other}: {w}");
        assert_eq!(balance(gw, key, "USD").await, funds, "balances after {step} as user {other}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_actions_check_the_owner() {
    let c = cluster().await;
    let gw = c.gw.clone();
    let (owner, other) = (51, 52);
    let key = create_user(&gw, owner).await;
    let other_key = create_user(&gw, other).await;
    deposit(&gw, "own-usd", owner, "USD", 5000).await;
    deposit(&gw, "other-usd", other, "USD", 7000).await;
    let (s, w) =
        post(&gw, "/v1/withdrawals", &[("x-api-key", &key)], json!({"client_id": "w1", "asset": "USD", "amount_minor": 1000})).await;
    assert_eq!((s, w["status"].as_str()), (200, Some("requested")), "{w}");
    let id = w["withdrawal_id"].as_i64().unwrap();

    refused_for_other(&gw, id, &key, other, "requested", (4000, 1000)).await;
    let (s, v) = action(&gw, id, "approve", owner).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("approved")), "{v}");
    refused_for_other(&gw, id, &key, other, "approved", (4000, 1000)).await;
    let (s, v) = action(&gw, id, "reject", owner).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("rejected")), "{v}");
    assert_eq!(balance(&gw, &key, "USD").await, (5000, 0), "the hold released");
    assert_eq!(balance(&gw, &other_key, "USD").await, (7000, 0), "the other user untouched");
    assert_eq!(conservation_violations(&c.env.pg), "");
}
