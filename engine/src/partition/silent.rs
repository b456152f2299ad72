//! Ending a hung leader's session, so that a standby can take its partition.
//!
//! The advisory lock lives as long as the leader's DB session, and a hung process whose
//! kernel still answers (SIGSTOP, a deadlocked runtime, a VM paused) keeps the session, so
//! nothing else would ever free the partition. The server knows better: each backend
//! reports what it waits for. A leader's backend that waits on its client
//! (`wait_event_type = 'Client'`: the server is idle, or blocked writing to a client that
//! does not read) is a leader that does not talk to its session. A healthy leader talks
//! at least every ~0.5 s (each batch is a round trip; idle, it pings every 250 ms), and a
//! leader waiting for the server (a slow or stalled commit, a lock) is not waiting on its
//! client at all. So a candidate that finds the lock taken looks at the holder's backend:
//! silent for `db.leader_silence_ms` (1.5 s) on two looks in a row (same backend, no
//! activity in between), it ends that session (`pg_terminate_backend`, waiting until the
//! backend has exited, so its open transaction is rolled back and its lock freed) and
//! tries the lock again at once.
//!
//! A look costs the server more than the lock try: `pg_locks` copies the whole lock table
//! (every backend's fast-path locks too, each under its lock) and `pg_stat_activity`
//! every backend's status, on each of the 100-200 ms tries of every hot standby. So a
//! look also reads how long ago the holder's state last changed, whatever it waits for:
//! its silence, as this look measures it, cannot reach `leader_silence_ms` before that
//! much more time has passed (any later change of state only starts it again), and a new
//! holder's silence starts after this look. The candidate skips the looks until then;
//! they could not have found the holder silent, so a hang is seen by the same lock try
//! as when every try looks.
//!
//! Why this cannot make two leaders commit: the old leader commits only on the session
//! that was ended; to write again it must take the lock anew, and the next leadership
//! first bumps `partitions.epoch` (a synchronous commit), so whatever the old session
//! committed before it ended is durable and loaded, and the old epoch is fenced for good.

use super::NodeState;
use crate::db;
use std::time::{Duration, Instant};

/// The holder of the partition's advisory lock (`pg_try_advisory_lock(7152, hashtext(key))`,
/// i.e. classid 7152, objid the hash, objsubid 2): pid, application name (the node id),
/// when its state last changed, how long ago (ms), and whether its backend waits on its
/// client (only then is that time silence).
const HOLDER_SQL: &str = "SELECT a.pid, a.application_name, a.state_change::text, \
     (extract(epoch from clock_timestamp() - a.state_change) * 1000)::float8, a.wait_event_type IS NOT DISTINCT FROM 'Client' \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 7152 AND l.objid = hashtext($1)::oid AND l.objsubid = 2 \
       AND a.state_change IS NOT NULL";

/// Ends a backend and waits (up to 1 s) until it has exited.
const TERMINATE_SQL: &str = "SELECT pg_terminate_backend($1, 1000)";

/// A leader ended by a standby: what the node reports (log, metric, webhook).
#[derive(Debug, Clone)]
pub struct Elimination {
    pub partition: String,
    /// The ended session's `application_name`: the hung leader's node id.
    pub holder: String,
    pub pid: i32,
    pub silent_ms: f64,
}

/// A candidate's watch over the holder of its partition's lock.
#[derive(Default)]
pub(super) struct Watch {
    /// The silent holder seen on the last look: (pid, when it went quiet).
    suspect: Option<(i32, String)>,
    /// No holder can have been silent for `leader_silence_ms` before this (see the module
    /// doc): lock tries before it do not look.
    quiet_until: Option<Instant>,
}

impl Watch {
    /// One look at the lock's holder; ends its session when it has been silent for
    /// `leader_silence_ms` on this look and the last. True when it was ended.
    pub(super) async fn end_silent_holder(&mut self, node: &NodeState, key: &str, client: &db::Session) -> bool {
        let asked = Instant::now();
        if self.quiet_until.is_some_and(|t| asked < t) {
            return false;
        }
        self.quiet_until = None;
        let Ok(Some(row)) = db::bounded(&node.pg, client.query_opt(HOLDER_SQL, &[&key])).await else {
            self.suspect = None;
            return false;
        };
        let (pid, holder, since, silent_ms, on_client): (i32, String, String, f64, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let limit_ms = node.leader_silence.as_millis() as f64;
        if !on_client || silent_ms < limit_ms {
            self.suspect = None;
            self.quiet_until = quiet_until(asked, silent_ms, limit_ms);
            return false;
        }
        if self.suspect.replace((pid, since.clone())) != Some((pid, since)) {
            return false; // first look: confirm on the next one
        }
        self.suspect = None;
        let ended = matches!(db::bounded(&node.pg, client.query_one(TERMINATE_SQL, &[&pid])).await, Ok(r) if r.get::<_, bool>(0));
        if ended {
            tracing::warn!(partition = key, holder, pid, silent_ms, "ended the session of a silent leader");
            node.report(super::Event::Eliminated(Elimination { partition: key.to_string(), holder, pid, silent_ms }));
        }
        ended
    }
}

/// Until when no holder can have been silent for `limit_ms`, after a look sent at `asked`
/// found the holder's state `since_ms` old (None: it may be already). The server measured
/// after `asked`, so this errs early, never late.
fn quiet_until(asked: Instant, since_ms: f64, limit_ms: f64) -> Option<Instant> {
    let left_ms = limit_ms - since_ms.max(0.0);
    (left_ms > 0.0).then(|| asked + Duration::from_secs_f64(left_ms / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_are_skipped_only_while_the_holder_cannot_be_silent_long_enough() {
        let t = Instant::now();
        assert_eq!(quiet_until(t, 0.0, 1500.0), Some(t + Duration::from_millis(1500)));
        assert_eq!(quiet_until(t, 1000.0, 1500.0), Some(t + Duration::from_millis(500)));
        // Quiet (or in one state) for the limit already: every try looks.
        assert_eq!(quiet_until(t, 1500.0, 1500.0), None);
        assert_eq!(quiet_until(t, 6000.0, 1500.0), None);
    }
}
