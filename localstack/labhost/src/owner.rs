//! One emulator per prefix: an exclusive lock on `/run/labhost/<prefix>.lock`, held by `run`
//! for its lifetime and briefly by `clean`, so neither can wreck a live emulator's objects.

use crate::names::Names;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("another labhost emulator with prefix {0:?} is running")]
    Busy(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub const LOCK_DIR: &str = "/run/labhost";

/// Holds the prefix until dropped.
pub struct PrefixLock {
    _file: File,
}

pub fn acquire(names: &Names) -> Result<PrefixLock, OwnerError> {
    let path = PathBuf::from(format!("{LOCK_DIR}/{}.lock", names.prefix()));
    let io = |source| OwnerError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(LOCK_DIR).map_err(io)?;
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(PrefixLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(OwnerError::Busy(names.prefix().to_string())),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}
