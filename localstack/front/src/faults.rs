//! Faults per (region, service): down, hang, slow, throttle, error. TODO(helper A).

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    Down,
    Hang,
    Slow { ms: u64 },
    Throttle { fraction: f64 },
    Error { code: String },
}

pub struct FaultTable {
    pub throttle_all: f64,
}

impl FaultTable {
    pub fn new(throttle_all: f64) -> FaultTable {
        FaultTable { throttle_all }
    }
}
