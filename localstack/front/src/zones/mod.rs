//! The hosted zones LocalStack holds, read every 250 ms into an immutable [`Snapshot`] that the
//! DNS server answers from ([`answer::answer`]).

pub mod answer;
pub mod rdata;
pub mod read;
pub mod snapshot;

pub use answer::{answer, Answer};
pub use snapshot::{Failover, RecordSet, Snapshot, Zone};

use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often LocalStack's zones are read: a change shows in DNS answers within a second.
pub const READ_INTERVAL_MS: u64 = 250;

/// The latest snapshot, swapped whole.
#[derive(Default)]
pub struct Zones {
    current: RwLock<Arc<Snapshot>>,
}

impl Zones {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, snap: Snapshot) {
        let new = Arc::new(snap);
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

/// Reads LocalStack's zones forever; a failed read keeps the previous snapshot.
pub async fn run(zones: Arc<Zones>, backend: crate::backend::Backend) {
    let mut tick = tokio::time::interval(Duration::from_millis(READ_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match read::snapshot(&backend.route53).await {
            Ok(s) => zones.replace(s),
            Err(e) => tracing::warn!(error = %e, "reading hosted zones from LocalStack"),
        }
    }
}
