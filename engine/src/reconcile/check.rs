//! The conservation identity of one asset, read in one snapshot (see ARCHITECTURE.md,
//! "Runtime reconciliation"). Accounts (migration 001): `owner_id > 0` users, `0` the
//! outside world, `-1000 - i` / `-1500 - i` fee accounts of spot market / perpetual `i`,
//! `-2000 - i` the margin pool and `-3000 - i` the insurance fund of perpetual `i` (both
//! never negative, migration 004). Holds are the `held` column of each
//! account. Deposits are rows of `deposits` (credited in the transaction that inserts
//! them), withdrawals leave on `status = 'completed'`.
//!
//! Two checks per asset:
//! * outside funds: users' available + users' held + fees + pools + insurance funds (+ any
//!   other system account) = sum(deposits) - sum(completed withdrawals);
//! * ledger: every account's `available` and `held` equal the sums of its ledger lines.

use serde_json::{json, Value};
use tokio_postgres::{Client, IsolationLevel};

/// One asset's totals, in minor units. Sums are exact (`numeric` in SQL, `i128` here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetTotals {
    pub asset: String,
    pub users_available: i128,
    pub users_held: i128,
    /// Fee accounts of spot markets and perpetuals (`-1999..=-1000`).
    pub fees: i128,
    /// Margin pools of perpetuals (`-2999..=-2000`): the open positions' margins.
    pub pools: i128,
    /// Insurance funds of perpetuals (`<= -3000`): pay losses beyond a position's margin.
    pub insurance: i128,
    /// System accounts of no known kind (`-999..=-1`): none exist; counted so that money
    /// moved to one is not lost from the sum.
    pub other: i128,
    /// The outside world's account (deposits' and withdrawals' counter-entry), reported only.
    pub world: i128,
    pub deposits: i128,
    pub completed_withdrawals: i128,
    /// Accounts whose balance differs from the sum of their ledger lines, and by how much
    /// in all (|available diff| + |held diff|, summed).
    pub ledger_mismatch_accounts: i64,
    pub ledger_mismatch_minor: i128,
}

impl AssetTotals {
    /// What the exchange holds for this asset: users' available and held, fees, pools,
    /// insurance funds.
    pub fn inside(&self) -> Option<i128> {
        let system = self.fees.checked_add(self.pools)?.checked_add(self.insurance)?.checked_add(self.other)?;
        self.users_available.checked_add(self.users_held)?.checked_add(system)
    }

    /// What came in from outside and did not leave: deposits - completed withdrawals.
    pub fn outside(&self) -> Option<i128> {
        self.deposits.checked_sub(self.completed_withdrawals)
    }

    /// `inside - outside`: 0 when the asset is conserved (None only on an i128 overflow,
    /// which counts as broken).
    pub fn imbalance(&self) -> Option<i128> {
        self.inside()?.checked_sub(self.outside()?)
    }

    pub fn ok(&self) -> bool {
        self.imbalance() == Some(0) && self.ledger_mismatch_accounts == 0
    }

    /// The amounts as JSON (decimal strings: exact beyond 2^53).
    pub fn to_json(&self) -> Value {
        let s = |v: Option<i128>| v.map_or_else(|| "overflow".to_string(), |v| v.to_string());
        json!({
            "asset": self.asset,
            "ok": self.ok(),
            "imbalance_minor": s(self.imbalance()),
            "inside_minor": s(self.inside()),
            "outside_minor": s(self.outside()),
            "users_available_minor": self.users_available.to_string(),
            "users_held_minor": self.users_held.to_string(),
            "fees_minor": self.fees.to_string(),
            "pools_minor": self.pools.to_string(),
            "insurance_minor": self.insurance.to_string(),
            "other_system_minor": self.other.to_string(),
            "world_minor": self.world.to_string(),
            "deposits_minor": self.deposits.to_string(),
            "completed_withdrawals_minor": self.completed_withdrawals.to_string(),
            "ledger_mismatch_accounts": self.ledger_mismatch_accounts,
            "ledger_mismatch_minor": self.ledger_mismatch_minor.to_string(),
        })
    }
}

/// Per asset, in one statement: the balance sums by kind of account, deposits, completed
/// withdrawals and the accounts whose balance differs from their ledger lines. Sums of
/// `bigint` are `numeric` (exact) and travel as text.
const SQL_TOTALS: &str = "\
WITH b AS (SELECT asset,
        sum(available) FILTER (WHERE owner_id > 0) AS ua,
        sum(held) FILTER (WHERE owner_id > 0) AS uh,
        sum(available + held) FILTER (WHERE owner_id BETWEEN -1999 AND -1000) AS fees,
        sum(available + held) FILTER (WHERE owner_id BETWEEN -2999 AND -2000) AS pools,
        sum(available + held) FILTER (WHERE owner_id <= -3000) AS insurance,
        sum(available + held) FILTER (WHERE owner_id BETWEEN -999 AND -1) AS other,
        sum(available + held) FILTER (WHERE owner_id = 0) AS world
    FROM balances GROUP BY asset),
d AS (SELECT asset, sum(amount_minor) AS dep FROM deposits GROUP BY asset),
w AS (SELECT asset, sum(amount_minor) AS wd FROM withdrawals WHERE status = 'completed' GROUP BY asset),
l AS (SELECT owner_id, asset, sum(d_available) AS a, sum(d_held) AS h FROM ledger GROUP BY owner_id, asset),
m AS (SELECT asset, count(*) AS n,
        sum(abs(coalesce(bal.available, 0) - coalesce(l.a, 0)) + abs(coalesce(bal.held, 0) - coalesce(l.h, 0))) AS diff
    FROM balances bal FULL JOIN l USING (owner_id, asset)
    WHERE coalesce(bal.available, 0) <> coalesce(l.a, 0) OR coalesce(bal.held, 0) <> coalesce(l.h, 0)
    GROUP BY asset),
a AS (SELECT asset FROM b UNION SELECT asset FROM d UNION SELECT asset FROM w UNION SELECT asset FROM m)
SELECT a.asset, coalesce(b.ua, 0)::text, coalesce(b.uh, 0)::text, coalesce(b.fees, 0)::text, coalesce(b.pools, 0)::text,
       coalesce(b.insurance, 0)::text, coalesce(b.other, 0)::text, coalesce(b.world, 0)::text, coalesce(d.dep, 0)::text, coalesce(w.wd, 0)::text,
       coalesce(m.n, 0), coalesce(m.diff, 0)::text
FROM a LEFT JOIN b USING (asset) LEFT JOIN d USING (asset) LEFT JOIN w USING (asset) LEFT JOIN m USING (asset)
ORDER BY a.asset";

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("database: {}", crate::db::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("a sum is not an integer: {0:?}")]
    Parse(String),
}

/// Reads every asset's totals in one `REPEATABLE READ READ ONLY` transaction: one
/// snapshot, so a commit that lands meanwhile is either wholly in the sums or not at all.
/// It takes no row locks (MVCC), so it never blocks a leader's writes.
pub async fn totals(client: &mut Client) -> Result<Vec<AssetTotals>, CheckError> {
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    let rows = tx.query(SQL_TOTALS, &[]).await?;
    tx.commit().await?;
    rows.iter().map(row_totals).collect()
}

fn row_totals(r: &tokio_postgres::Row) -> Result<AssetTotals, CheckError> {
    let n = |i: usize| -> Result<i128, CheckError> {
        let s: &str = r.get(i);
        s.parse().map_err(|_| CheckError::Parse(s.to_string()))
    };
    Ok(AssetTotals {
        asset: r.get(0),
        users_available: n(1)?,
        users_held: n(2)?,
        fees: n(3)?,
        pools: n(4)?,
        insurance: n(5)?,
        other: n(6)?,
        world: n(7)?,
        deposits: n(8)?,
        completed_withdrawals: n(9)?,
        ledger_mismatch_accounts: r.get(10),
        ledger_mismatch_minor: n(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> AssetTotals {
        // 1,000 deposited, 100 withdrawn; users hold 840 (50 of it held), fees 30, pool 20,
        // insurance fund 10.
        AssetTotals {
            asset: "USD".into(),
            users_available: 790,
            users_held: 50,
            fees: 30,
            pools: 20,
            insurance: 10,
            world: -900,
            deposits: 1000,
            completed_withdrawals: 100,
            ..AssetTotals::default()
        }
    }

    #[test]
    fn conserved_asset_is_ok() {
        assert_eq!(usd().imbalance(), Some(0));
        assert!(usd().ok());
    }

    #[test]
    fn money_made_up_or_lost_is_the_imbalance() {
        let mut t = usd();
        t.users_available += 7;
        assert_eq!(t.imbalance(), Some(7));
        assert!(!t.ok());
        t.users_available -= 10;
        assert_eq!(t.imbalance(), Some(-3));
        // Money moved between the pool and the insurance fund is conserved; money the
        // insurance fund lost (and nobody got) is not.
        let mut t = usd();
        t.pools += 10;
        t.insurance -= 10;
        assert!(t.ok());
        t.insurance -= 4;
        assert_eq!(t.imbalance(), Some(-4));
    }

    #[test]
    fn ledger_mismatch_breaks_even_when_sums_agree() {
        let mut t = usd();
        t.ledger_mismatch_accounts = 1;
        t.ledger_mismatch_minor = 5;
        assert!(!t.ok());
    }

    #[test]
    fn sums_beyond_i64_are_exact_and_overflow_is_broken() {
        let mut t = usd();
        t.users_available = i64::MAX as i128 * 4;
        t.deposits = i64::MAX as i128 * 4 + 210;
        assert!(t.ok());
        t.users_available = i128::MAX;
        assert_eq!(t.imbalance(), None);
        assert!(!t.ok());
        assert_eq!(t.to_json()["imbalance_minor"], "overflow");
    }
}
