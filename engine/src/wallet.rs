//! Wallet leader logic (one partition per user shard): admin deposits, withdrawals
//! (request -> approve -> complete, or reject; funds held meanwhile) and the heartbeat.

use crate::api::{ApiError, ErrorCode, Reply};
use crate::ledger::{self, WORLD};
use crate::partition::{self, Job, LeadError, LeaderCtx, Logic, TxLogic};
use serde_json::{json, Value};
use tokio_postgres::Transaction;

#[derive(Debug)]
pub enum WalletCmd {
    Deposit {
        deposit_id: String,
        user_id: i64,
        asset: String,
        amount_minor: i64,
    },
    Withdraw {
        user_id: i64,
        client_id: String,
        asset: String,
        amount_minor: i64,
    },
    /// An admin's step on a withdrawal of `user_id` (refused if it is another user's).
    Action {
        withdrawal_id: i64,
        user_id: i64,
        action: WithdrawalAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalAction {
    Approve,
    Complete,
    Reject,
}

pub struct WalletLogic {
    pub shard: i32,
    pub node_id: String,
}

async fn withdrawal_json(tx: &Transaction<'_>, id: i64) -> Result<Option<Value>, tokio_postgres::Error> {
    let r = tx
        .query_opt(
            "SELECT withdrawal_id, user_id, client_id, asset, amount_minor, status, reason FROM withdrawals WHERE withdrawal_id = $1",
            &[&id],
        )
        .await?;
    Ok(r.map(|r| {
        json!({"withdrawal_id": r.get::<_, i64>(0), "user_id": r.get::<_, i64>(1), "client_id": r.get::<_, &str>(2),
               "asset": r.get::<_, &str>(3), "amount_minor": r.get::<_, i64>(4), "status": r.get::<_, &str>(5),
               "reason": r.get::<_, Option<&str>>(6)})
    }))
}

impl TxLogic for WalletLogic {
    type Cmd = WalletCmd;

    async fn exec(&self, tx: &Transaction<'_>, cmd: &WalletCmd) -> Result<Reply, LeadError> {
        match cmd {
            WalletCmd::Deposit { deposit_id, user_id, asset, amount_minor } => {
                deposit(tx, deposit_id, *user_id, asset, *amount_minor).await
            }
            WalletCmd::Withdraw { user_id, client_id, asset, amount_minor } => {
                withdraw(tx, *user_id, client_id, asset, *amount_minor).await
            }
            WalletCmd::Action { withdrawal_id, user_id, action } => withdrawal_action(tx, *withdrawal_id, *user_id, *action).await,
        }
    }
}

/// Credits a deposit once: a retry under the same `deposit_id` answers the first result.
async fn deposit(tx: &Transaction<'_>, deposit_id: &str, user_id: i64, asset: &str, amount_minor: i64) -> Result<Reply, LeadError> {
    let n = tx
        .execute(
            "INSERT INTO deposits (deposit_id, user_id, asset, amount_minor) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&deposit_id, &user_id, &asset, &amount_minor],
        )
        .await?;
    if n == 1 {
        let r = format!("deposit:{deposit_id}");
        ledger::post(tx, &r, &[(WORLD, asset, -amount_minor, 0), (user_id, asset, amount_minor, 0)]).await?;
    }
    let row = tx.query_one("SELECT user_id, asset, amount_minor FROM deposits WHERE deposit_id = $1", &[&deposit_id]).await?;
    Ok(Ok(json!({"deposit_id": deposit_id, "user_id": row.get::<_, i64>(0), "asset": row.get::<_, &str>(1),
                 "amount_minor": row.get::<_, i64>(2), "status": "credited"})))
}

/// Requests a withdrawal (its funds held), or rejects it for insufficient funds; a retry
/// under the same `client_id` answers the first result.
async fn withdraw(tx: &Transaction<'_>, user_id: i64, client_id: &str, asset: &str, amount_minor: i64) -> Result<Reply, LeadError> {
    let existing: Option<i64> = tx
        .query_opt("SELECT withdrawal_id FROM withdrawals WHERE user_id = $1 AND client_id = $2", &[&user_id, &client_id])
        .await?
        .map(|r| r.get(0));
    let id = match existing {
        Some(id) => id,
        None => {
            let ok = ledger::has_available(tx, user_id, asset, amount_minor).await?;
            let (status, reason) = if ok { ("requested", None) } else { ("rejected", Some("insufficient_funds")) };
            let id: i64 = tx
                .query_one(
                    "INSERT INTO withdrawals (user_id, client_id, asset, amount_minor, status, reason) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING withdrawal_id",
                    &[&user_id, &client_id, &asset, &amount_minor, &status, &reason],
                )
                .await?
                .get(0);
            if ok {
                let r = format!("withdrawal:{id}:hold");
                ledger::post(tx, &r, &[(user_id, asset, -amount_minor, amount_minor)]).await?;
            }
            id
        }
    };
    Ok(withdrawal_json(tx, id).await?.ok_or_else(|| ApiError::not_found("withdrawal vanished")))
}

/// Moves a withdrawal along request -> approve -> complete (or reject, its funds released);
/// repeating a step already taken answers the current state. The call names the owner: a
/// withdrawal of another user is refused (403 `wrong_owner`) and nothing changes.
async fn withdrawal_action(tx: &Transaction<'_>, withdrawal_id: i64, owner: i64, action: WithdrawalAction) -> Result<Reply, LeadError> {
    let row = tx
        .query_opt("SELECT user_id, asset, amount_minor, status FROM withdrawals WHERE withdrawal_id = $1 FOR UPDATE", &[&withdrawal_id])
        .await?;
    let Some(r) = row else {
        return Ok(Err(ApiError::not_found(format!("no withdrawal {withdrawal_id}"))));
    };
    let (user, asset, amt, status): (i64, String, i64, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
    if user != owner {
        return Ok(Err(ApiError::wrong_owner(format!("withdrawal {withdrawal_id} is not user {owner}'s"))));
    }
    let next = match (action, status.as_str()) {
        (WithdrawalAction::Approve, "requested") => Some("approved"),
        (WithdrawalAction::Complete, "approved") => Some("completed"),
        (WithdrawalAction::Reject, "requested" | "approved") => Some("rejected"),
        _ => None,
    };
    let already = matches!(
        (action, status.as_str()),
        (WithdrawalAction::Approve, "approved" | "completed")
            | (WithdrawalAction::Complete, "completed")
            | (WithdrawalAction::Reject, "rejected")
    );
    match next {
        Some(n) => {
            let r = format!("withdrawal:{withdrawal_id}:{n}");
            if n == "completed" {
                ledger::post(tx, &r, &[(user, &asset, 0, -amt), (WORLD, &asset, amt, 0)]).await?;
            } else if n == "rejected" {
                ledger::post(tx, &r, &[(user, &asset, amt, -amt)]).await?;
            }
            tx.execute("UPDATE withdrawals SET status = $2 WHERE withdrawal_id = $1", &[&withdrawal_id, &n]).await?;
            Ok(withdrawal_json(tx, withdrawal_id).await?.ok_or_else(|| ApiError::not_found("vanished")))
        }
        None if already => Ok(withdrawal_json(tx, withdrawal_id).await?.ok_or_else(|| ApiError::not_found("vanished"))),
        None => Ok(Err(ApiError::conflict(ErrorCode::InvalidTransition, format!("withdrawal is {status}")))),
    }
}

impl Logic for WalletLogic {
    type Cmd = WalletCmd;

    async fn load(&mut self, ctx: &mut LeaderCtx) -> Result<(), LeadError> {
        self.tick(ctx).await
    }

    async fn run_batch(&mut self, ctx: &mut LeaderCtx, jobs: Vec<Job<WalletCmd>>) -> Result<(), LeadError> {
        partition::run_each(self, ctx, jobs).await
    }

    async fn tick(&mut self, ctx: &mut LeaderCtx) -> Result<(), LeadError> {
        let fencer = ctx.fencer();
        let tx = ctx.client.transaction().await?;
        tx.execute(
            "INSERT INTO wallet_heartbeats (shard, node_id, at) VALUES ($1, $2, now()) \
             ON CONFLICT (shard) DO UPDATE SET node_id = $2, at = now()",
            &[&self.shard, &self.node_id],
        )
        .await?;
        fencer.fence(&tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
