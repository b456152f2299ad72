//! Request parsing and validation never panic, and accept only in-range values.

use engine::requests::{self as rq, parse};
use engine_config::ExchangeConfig;
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[a-zA-Z0-9_-]{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![Just("BTC-USD"), Just("buy"), Just("sell"), Just("limit"), Just("market"), Just("fok"), Just("USD")]
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 6, |inner| {
        let keys = prop_oneof![
            Just("market".to_string()),
            Just("client_order_id".to_string()),
            Just("side".to_string()),
            Just("type".to_string()),
            Just("price_ticks".to_string()),
            Just("qty_lots".to_string()),
            Just("quote_budget_minor".to_string()),
            Just("asset".to_string()),
            Just("amount_minor".to_string()),
            Just("client_id".to_string()),
            Just("deposit_id".to_string()),
            Just("user_id".to_string()),
            "[a-z]{1,5}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(keys, inner, 0..8).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_all(bytes: &[u8], ex: &ExchangeConfig) {
    if let Ok(p) = parse::<rq::PlaceOrder>(bytes) {
        if p.validate(ex).is_ok() {
            assert!(p.qty_lots > 0 && p.qty_lots <= rq::MAX_QTY);
            let reserve = engine::settle::reservation(
                &engine::book::NewOrder {
                    id: 1,
                    user_id: 1,
                    side: p.side,
                    kind: p.kind,
                    price_ticks: p.price_ticks,
                    qty_lots: p.qty_lots,
                    quote_budget: p.quote_budget_minor,
                },
                engine::settle::Fees { maker_bps: 10, taker_bps: 20 },
            );
            assert!(reserve.is_ok(), "validated order overflows its reservation");
        }
    }
    if let Ok(d) = parse::<rq::Deposit>(bytes) {
        if d.validate(ex).is_ok() {
            assert!(d.amount_minor > 0 && d.user_id > 0);
        }
    }
    if let Ok(w) = parse::<rq::Withdraw>(bytes) {
        let _ = w.validate(ex);
    }
    if let Ok(q) = parse::<rq::QuoteReq>(bytes) {
        let _ = q.validate(ex);
    }
    let _ = parse::<rq::CancelOrder>(bytes);
    let _ = parse::<rq::ModeReq>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_all(&bytes, &ExchangeConfig::example());
    }

    #[test]
    fn structured_json_never_panics(v in json_value()) {
        check_all(v.to_string().as_bytes(), &ExchangeConfig::example());
    }
}
