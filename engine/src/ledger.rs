//! Ledger writes used by the wallet and OTC modules: every call posts entries that sum
//! to zero per asset, and updates the balances they touch in the same transaction.

use tokio_postgres::Transaction;

/// One movement: (owner_id, asset, d_available, d_held).
pub type Move<'a> = (i64, &'a str, i64, i64);

/// The outside world: deposits come from it and withdrawals go to it.
pub const WORLD: i64 = 0;

/// Posts movements unconditionally (callers check funds first with `reserve`/`take`).
/// A movement that would make a user balance negative fails the transaction (DB CHECK).
pub async fn post(tx: &Transaction<'_>, reference: &str, moves: &[Move<'_>]) -> Result<(), tokio_postgres::Error> {
    let mut sorted: Vec<Move> = moves.to_vec();
    sorted.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    debug_assert!({
        let mut sums = std::collections::HashMap::new();
        for m in &sorted {
            *sums.entry(m.1).or_insert(0i64) += m.2 + m.3;
        }
        sums.values().all(|v| *v == 0)
    });
    for (owner, asset, da, dh) in &sorted {
        // Create the row first: a CHECK applies to the proposed row of an upsert.
        tx.execute("INSERT INTO balances (owner_id, asset) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[owner, asset]).await?;
        tx.execute(
            "UPDATE balances SET available = available + $3, held = held + $4 WHERE owner_id = $1 AND asset = $2",
            &[owner, asset, da, dh],
        )
        .await?;
        tx.execute(
            "INSERT INTO ledger (ref, owner_id, asset, d_available, d_held) VALUES ($1, $2, $3, $4, $5)",
            &[&reference, owner, asset, da, dh],
        )
        .await?;
    }
    Ok(())
}

/// Checks that `owner` has `amount` available (locking the row). False if not.
pub async fn has_available(tx: &Transaction<'_>, owner: i64, asset: &str, amount: i64) -> Result<bool, tokio_postgres::Error> {
    let row = tx.query_opt("SELECT available FROM balances WHERE owner_id = $1 AND asset = $2 FOR UPDATE", &[&owner, &asset]).await?;
    Ok(row.is_some_and(|r| r.get::<_, i64>(0) >= amount))
}
