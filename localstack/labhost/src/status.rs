//! `status.json` and the pid file in the state dir: how the CLI talks to a running emulator.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is corrupt: {source}")]
    Corrupt { path: String, source: serde_json::Error },
    #[error("no emulator running for state dir {0} (no live pid in labhost.pid)")]
    NotRunning(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegionStatus {
    pub name: String,
    pub vpc_cidr: String,
    pub bridge: String,
    pub gateway: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostStatus {
    pub id: String,
    pub region: String,
    pub ip: String,
    pub hostname: String,
    pub netns: String,
    pub powered: bool,
    pub isolated: bool,
    pub has_key: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SkippedStatus {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub pid: u32,
    pub prefix: String,
    /// starting | running | stopping | stopped
    pub state: String,
    pub applied_generation: u64,
    pub latency_supported: bool,
    pub regions: Vec<RegionStatus>,
    pub hosts: Vec<HostStatus>,
    pub skipped: Vec<SkippedStatus>,
    pub last_error: Option<String>,
}

pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> Self {
        StateDir { root: root.to_path_buf() }
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("labhost.pid")
    }

    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }

    pub fn hosts_dir(&self) -> PathBuf {
        self.root.join("hosts")
    }

    /// The pid in the pid file if that process is alive.
    pub fn live_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        // SAFETY: signal 0 only checks that the process exists.
        (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }

    pub fn read_status(&self) -> Result<Status, StatusError> {
        let p = self.status_file();
        let bytes = std::fs::read(&p).map_err(|source| StatusError::Io { path: p.display().to_string(), source })?;
        serde_json::from_slice(&bytes).map_err(|source| StatusError::Corrupt { path: p.display().to_string(), source })
    }

    /// Status of a live emulator, or `NotRunning`.
    pub fn running_status(&self) -> Result<Status, StatusError> {
        if self.live_pid().is_none() {
            return Err(StatusError::NotRunning(self.root.display().to_string()));
        }
        self.read_status()
    }

    pub fn write_status(&self, s: &Status) -> Result<(), StatusError> {
        let p = self.status_file();
        let tmp = self.root.join("status.json.tmp");
        let io = |source| StatusError::Io { path: p.display().to_string(), source };
        std::fs::write(&tmp, serde_json::to_vec_pretty(s).expect("status serialize")).map_err(io)?;
        std::fs::rename(&tmp, &p).map_err(|source| StatusError::Io { path: p.display().to_string(), source })
    }
}
