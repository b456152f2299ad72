//! The gateway's node table: each node's liveness and last status (who leads what, its
//! mode, outstanding commits), and what follows from it: the leader of a partition, the
//! region's health.

use super::{lock, Gateway};
use crate::metrics::label;
use crate::protocol::{paths, NodeStatus, PartitionKey, GATEWAY_HEADER, MODE_ACTIVE, MODE_STANDBY};
use engine_config::PeerConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct NodeView {
    pub peer: PeerConfig,
    pub alive: AtomicBool,
    pub status: Mutex<NodeStatus>,
    /// Woken when the node is marked dead (calls waiting on it may be given up: `moved`).
    died: tokio::sync::Notify,
}

impl NodeView {
    pub fn new(peer: PeerConfig) -> Self {
        NodeView { peer, alive: AtomicBool::new(false), status: Mutex::new(NodeStatus::default()), died: Default::default() }
    }

    /// The node did not answer (a probe, or a call failed): not routable until it does.
    pub fn mark_dead(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.died.notify_waiters();
    }

    /// Resolves once the node is marked dead (at once if it is).
    pub async fn dead(&self) {
        loop {
            let woken = self.died.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !self.alive.load(Ordering::SeqCst) {
                return;
            }
            woken.await;
        }
    }

    fn routable(&self) -> bool {
        if !self.alive.load(Ordering::SeqCst) {
            return false;
        }
        let s = lock(&self.status);
        !s.isolated && s.mode == MODE_ACTIVE
    }

    fn mode_is(&self, mode: &str) -> bool {
        lock(&self.status).mode == mode
    }
}

impl Gateway {
    /// Reads `n`'s status; a node that does not answer is dead until it does.
    pub(super) async fn probe_node(&self, n: &NodeView, period: Duration) {
        let url = format!("http://{}{}", n.peer.addr, paths::NODE_STATUS);
        let timeout = period.max(Duration::from_millis(250));
        let r = self.http.get(&url).header(GATEWAY_HEADER, &self.cfg.gateway_id).timeout(timeout).send().await;
        let st = match r {
            Ok(r) if r.status().is_success() => r.json::<NodeStatus>().await.ok(),
            _ => None,
        };
        let was = n.alive.load(Ordering::SeqCst);
        match st {
            Some(mut s) => {
                s.received = Some(Instant::now());
                *lock(&n.status) = s;
                n.alive.store(true, Ordering::SeqCst);
            }
            None => n.mark_dead(),
        }
        let now = n.alive.load(Ordering::SeqCst);
        if was != now {
            tracing::info!(node = %n.peer.node_id, alive = now, "node liveness changed");
            self.metrics.inc(format!("engine_gateway_node_transitions_total{{node=\"{}\"}}", label(&n.peer.node_id)));
        }
    }

    /// The node currently leading `partition`, if any is alive and routable.
    pub fn leader_of(&self, partition: &PartitionKey) -> Option<Arc<NodeView>> {
        self.nodes.iter().find(|n| n.routable() && lock(&n.status).leading.contains(partition)).cloned()
    }

    /// `node` said it does not lead `partition` (any more): stop routing it there until
    /// its next status probe says otherwise.
    pub(crate) fn forget_leader(&self, node: &NodeView, partition: &PartitionKey) {
        lock(&node.status).leading.retain(|k| k != partition);
    }

    /// True when every live node reports standby mode (a standby region).
    pub fn region_standby(&self) -> bool {
        let live: Vec<_> = self.nodes.iter().filter(|n| n.alive.load(Ordering::SeqCst)).collect();
        !live.is_empty() && live.iter().all(|n| n.mode_is(MODE_STANDBY))
    }

    /// All partitions of the region, as configured.
    pub fn partitions(&self) -> Vec<PartitionKey> {
        PartitionKey::all(&self.cfg.exchange)
    }

    /// Why the region cannot take writes, or None if it can.
    pub fn unhealthy_reason(&self) -> Option<String> {
        if !self.db_writable.load(Ordering::SeqCst) {
            return Some(lock(&self.db_reason).clone());
        }
        if self.nodes.iter().any(|n| n.alive.load(Ordering::SeqCst) && n.mode_is(MODE_STANDBY)) {
            return Some("region is in standby mode".into());
        }
        if let Some((ms, what)) = self.worst_stall() {
            return Some(format!("commits stalled for {ms} ms on {what}"));
        }
        let unled: Vec<String> = self.partitions().into_iter().filter(|p| self.leader_of(p).is_none()).map(|p| p.to_string()).collect();
        if !unled.is_empty() {
            return Some(format!("partitions without a live leader: {}", unled.join(", ")));
        }
        None
    }

    /// The oldest DB work outstanding for longer than `db.commit_stall_ms`: a partition
    /// leader's (as of its last status, aged since) or the gateway probe's own commit.
    pub fn worst_stall(&self) -> Option<(u64, String)> {
        let limit = self.pg_rw.limits.stall.as_millis() as u64;
        let mut worst: Option<(u64, String)> = None;
        let mut consider = |ms: u64, what: String| {
            if ms > limit && worst.as_ref().is_none_or(|w| ms > w.0) {
                worst = Some((ms, what));
            }
        };
        if let Some(t) = *lock(&self.probe_in_flight) {
            consider(t.elapsed().as_millis() as u64, "the gateway's DB probe".into());
        }
        for n in self.nodes.iter().filter(|n| n.routable()) {
            let s = lock(&n.status);
            let since = s.received.map(|t| t.elapsed().as_millis() as u64).unwrap_or(0);
            for (p, ms) in &s.in_flight_ms {
                if s.leading.contains(p) {
                    consider(ms + since, p.to_string());
                }
            }
        }
        worst
    }
}
