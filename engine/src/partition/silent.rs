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
//! Why this cannot make two leaders commit: the old leader commits only on the session
//! that was ended; to write again it must take the lock anew, and the next leadership
//! first bumps `partitions.epoch` (a synchronous commit), so whatever the old session
//! committed before it ended is durable and loaded, and the old epoch is fenced for good.

use super::NodeState;
use crate::db;

/// The holder of the partition's advisory lock (`pg_try_advisory_lock(7152, hashtext(key))`,
/// i.e. classid 7152, objid the hash, objsubid 2) while its backend waits on its client:
/// pid, application name (the node id), when it went quiet, and for how long (ms).
const SILENT_HOLDER_SQL: &str = "SELECT a.pid, a.application_name, a.state_change::text, \
     (extract(epoch from clock_timestamp() - a.state_change) * 1000)::float8 \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 7152 AND l.objid = hashtext($1)::oid AND l.objsubid = 2 \
       AND a.wait_event_type = 'Client' AND a.state_change IS NOT NULL";

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
}

impl Watch {
    /// One look at the lock's holder; ends its session when it has been silent for
    /// `leader_silence_ms` on this look and the last. True when it was ended.
    pub(super) async fn end_silent_holder(&mut self, node: &NodeState, key: &str, client: &db::Session) -> bool {
        let Ok(Some(row)) = db::bounded(&node.pg, client.query_opt(SILENT_HOLDER_SQL, &[&key])).await else {
            self.suspect = None;
            return false;
        };
        let (pid, holder, since, silent_ms): (i32, String, String, f64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        if silent_ms < node.leader_silence.as_millis() as f64 {
            self.suspect = None;
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
