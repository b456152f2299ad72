//! Plain data shared by the planner, the executor and the CLI.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// EC2 instance state as reported by `DescribeInstances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            _ => return None,
        })
    }
}

/// One instance as seen through the EC2 API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub region_index: usize,
    pub state: InstanceState,
    pub private_ip: Option<Ipv4Addr>,
    pub private_dns: Option<String>,
    pub key_name: Option<String>,
}

/// What one host should look like (desired) or does look like (current).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    pub id: String,
    pub region_index: usize,
    pub ip: Ipv4Addr,
    pub hostname: String,
    /// Processes running and eth0 up.
    pub powered: bool,
    /// All traffic except loopback dropped inside the host.
    pub isolated: bool,
    /// OpenSSH public key line accepted for root; `None` accepts nothing.
    pub authorized_key: Option<String>,
}
