//! The DB primary as this node's monitor sees it: the host its read-write session reached
//! and the primary's timeline. A change of either (the host failed over to another, or a
//! promotion behind the same address began a new timeline) is a promotion seen by this
//! engine: metric `engine_db_primary_changes_total{node}` and the webhook event
//! `db_primary_changed`. The first sight after start-up is only recorded (gauge
//! `engine_db_timeline{node}`). Active mode only: a standby's session may be on a replica.

use crate::db::Session;
use crate::metrics::label;
use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;

/// The primary's timeline, read only on a primary (no row on a replica).
const SQL_TIMELINE: &str = "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) WHERE NOT pg_is_in_recovery()";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Primary {
    host: String,
    timeline: i64,
}

impl std::fmt::Display for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (timeline {})", self.host, self.timeline)
    }
}

/// The last primary seen (None before the first sight).
#[derive(Default)]
pub(super) struct Watch {
    seen: Option<Primary>,
}

impl Watch {
    /// Looks at the primary through the monitor's session `db`, reports a change.
    pub(super) async fn observe(&mut self, node: &Arc<Node>, db: Option<&Session>) {
        if !node.state.is_active() {
            return;
        }
        let Some(now) = (match db {
            Some(c) => identify(node, c).await,
            None => None,
        }) else {
            return;
        };
        let nid = label(&node.cfg.node_id);
        node.metrics.set(format!("engine_db_timeline{{node=\"{nid}\"}}"), now.timeline as f64);
        if let Some(before) = self.seen.replace(now.clone()).filter(|b| *b != now) {
            node.metrics.inc(format!("engine_db_primary_changes_total{{node=\"{nid}\"}}"));
            let what = vec![format!("DB primary changed: {before} -> {now}")];
            super::transition(node, "db_primary_changed", &what, &vec![("db_timeline", now.timeline as f64, before.timeline as f64)]);
        }
    }
}

/// The primary behind session `c`, or None (a replica, an error, no answer in time).
async fn identify(node: &Node, c: &Session) -> Option<Primary> {
    let limit = Duration::from_millis(node.cfg.monitor.db_latency_max_ms.max(10) * 4);
    let row = tokio::time::timeout(limit, c.query_opt(SQL_TIMELINE, &[])).await.ok()?.ok()??;
    let timeline = i64::from_str_radix(row.get::<_, &str>(0), 16).ok()?;
    assert!(timeline > 0, "a primary's timeline is positive, got {timeline}");
    Some(Primary { host: c.host.clone(), timeline })
}
