//! EC2's eventual consistency after a create. TODO(helper A).

pub struct Consistency {
    pub window_ms: u64,
}

impl Consistency {
    pub fn new(window_ms: u64) -> Consistency {
        Consistency { window_ms }
    }
}
