//! CLI side of a running emulator: inject/heal faults, stop it, read its status.

use crate::faults::{Fault, FaultError, FaultStore};
use crate::status::{StateDir, Status, StatusError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("unknown host {0:?}: give an instance id or private IP the emulator hosts")]
    UnknownHost(String),
    #[error("unknown region {0:?}: not in the emulator's config")]
    UnknownRegion(String),
    #[error("latency injection unsupported: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM)")]
    LatencyUnsupported,
    #[error("emulator did not apply generation {0} within {1} s")]
    NotApplied(u64, u64),
    #[error("emulator pid {0} still alive after {1} s")]
    StopTimeout(i32, u64),
}

const APPLY_TIMEOUT_S: u64 = 20;
const STOP_TIMEOUT_S: u64 = 60;

#[derive(Debug, serde::Serialize)]
pub struct FaultOutcome {
    pub action: &'static str,
    pub fault: Option<Fault>,
    pub changed: bool,
    pub generation: u64,
}

/// Resolves a host given as instance id or private IP to its instance id.
pub fn resolve_host(status: &Status, host: &str) -> Result<String, ControlError> {
    status
        .hosts
        .iter()
        .find(|h| h.id == host || h.ip == host)
        .map(|h| h.id.clone())
        .ok_or_else(|| ControlError::UnknownHost(host.to_string()))
}

fn check_region(status: &Status, region: &str) -> Result<(), ControlError> {
    if status.regions.iter().any(|r| r.name == region) {
        Ok(())
    } else {
        Err(ControlError::UnknownRegion(region.to_string()))
    }
}

/// Normalises a fault against the running emulator's status (hosts by id, regions checked).
pub fn normalise(status: &Status, fault: Fault) -> Result<Fault, ControlError> {
    Ok(match fault {
        Fault::PowerOff { host } => Fault::PowerOff { host: resolve_host(status, &host)? },
        Fault::Isolate { host } => Fault::Isolate { host: resolve_host(status, &host)? },
        Fault::Blackout { region } => {
            check_region(status, &region)?;
            Fault::Blackout { region }
        }
        Fault::Partition { a, b } => {
            check_region(status, &a)?;
            check_region(status, &b)?;
            Fault::Partition { a, b }
        }
        Fault::Latency { delay_ms } => {
            if !status.latency_supported {
                return Err(ControlError::LatencyUnsupported);
            }
            Fault::Latency { delay_ms }
        }
    })
}

/// Injects (`on`) or heals one fault, or heals everything (`fault == None`, `on == false`),
/// logs it to `faults.log`, and waits until the emulator has applied it.
pub fn change_fault(state: &StateDir, fault: Option<Fault>, on: bool) -> Result<FaultOutcome, ControlError> {
    let status = state.running_status()?;
    let fault = match fault {
        Some(f) if on => Some(normalise(&status, f)?),
        // Healing a host that is powered off by this very fault: resolve by id or ip too.
        Some(Fault::PowerOff { host }) => Some(Fault::PowerOff { host: resolve_host(&status, &host).unwrap_or(host) }),
        Some(Fault::Isolate { host }) => Some(Fault::Isolate { host: resolve_host(&status, &host).unwrap_or(host) }),
        other => other,
    };
    let store = FaultStore::new(&state.root);
    let (faults, changed) = store.update(|f| match &fault {
        Some(one) => f.set(one, on),
        None => f.heal_all(),
    })?;
    let action = if on { "fault" } else { "heal" };
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let what = fault.as_ref().map(|f| serde_json::to_string(f).unwrap_or_default()).unwrap_or_else(|| "all".into());
    store.log(&format!("{now_ms} {action} {what} changed={changed} generation={}", faults.generation))?;
    wait_applied(state, faults.generation)?;
    Ok(FaultOutcome { action, fault, changed, generation: faults.generation })
}

fn wait_applied(state: &StateDir, generation: u64) -> Result<(), ControlError> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(APPLY_TIMEOUT_S) {
        let status = state.running_status()?;
        if status.applied_generation >= generation {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(ControlError::NotApplied(generation, APPLY_TIMEOUT_S))
}

/// Sends SIGTERM and waits for the emulator to finish its cleanup. Ok(false): was not running.
pub fn stop(state: &StateDir) -> Result<bool, ControlError> {
    let Some(pid) = state.live_pid() else { return Ok(false) };
    // SAFETY: plain kill(2) on the pid our own pid file names.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(STOP_TIMEOUT_S) {
        // SAFETY: signal 0 only probes for existence.
        if unsafe { libc::kill(pid, 0) } != 0 || !state.pid_file().exists() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(ControlError::StopTimeout(pid, STOP_TIMEOUT_S))
}
