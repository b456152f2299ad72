//! Injected faults: a small JSON document in the state dir, written by `labhost fault/heal`
//! (under a file lock) and applied by the running emulator on its next poll.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("fault state {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("fault state {path} is corrupt: {source}")]
    Corrupt { path: String, source: serde_json::Error },
}

/// Everything currently injected. Reversible: healing removes the entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Bumped on every change; the emulator reports the generation it has applied.
    pub generation: u64,
    /// Instance ids powered off behind EC2's back.
    pub powered_off: BTreeSet<String>,
    /// Region names whose hosts are all powered off.
    pub blackout: BTreeSet<String>,
    /// Unordered region-name pairs (stored sorted) that cannot reach each other.
    pub partitions: BTreeSet<(String, String)>,
    /// Instance ids cut off from all network traffic (processes keep running).
    pub isolated: BTreeSet<String>,
    /// Extra one-way delay between regions in ms (needs sch_netem); 0 = none.
    #[serde(default)]
    pub latency_ms: u32,
}

/// One fault (or, for `heal`, the fault to remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    PowerOff { host: String },
    Blackout { region: String },
    Partition { a: String, b: String },
    Isolate { host: String },
    Latency { delay_ms: u32 },
}

pub fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Faults {
    /// Adds (`on`) or removes a fault. Returns whether anything changed.
    pub fn set(&mut self, fault: &Fault, on: bool) -> bool {
        fn toggle<T: Ord + Clone>(set: &mut BTreeSet<T>, v: &T, on: bool) -> bool {
            if on {
                set.insert(v.clone())
            } else {
                set.remove(v)
            }
        }
        let changed = match fault {
            Fault::PowerOff { host } => toggle(&mut self.powered_off, host, on),
            Fault::Blackout { region } => toggle(&mut self.blackout, region, on),
            Fault::Partition { a, b } => toggle(&mut self.partitions, &pair(a, b), on),
            Fault::Isolate { host } => toggle(&mut self.isolated, host, on),
            Fault::Latency { delay_ms } => {
                let v = if on { *delay_ms } else { 0 };
                let changed = self.latency_ms != v;
                self.latency_ms = v;
                changed
            }
        };
        if changed {
            self.generation += 1;
        }
        changed
    }

    pub fn heal_all(&mut self) -> bool {
        let generation = self.generation;
        let empty = Faults { generation, ..Faults::default() };
        if *self == empty {
            return false;
        }
        *self = Faults { generation: generation + 1, ..Faults::default() };
        true
    }

    pub fn is_empty(&self) -> bool {
        *self == Faults { generation: self.generation, ..Faults::default() }
    }
}

pub struct FaultStore {
    dir: PathBuf,
}

impl FaultStore {
    pub fn new(state_dir: &Path) -> Self {
        FaultStore { dir: state_dir.to_path_buf() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("faults.json")
    }

    fn io(&self, p: &Path) -> impl FnOnce(std::io::Error) -> FaultError {
        let path = p.display().to_string();
        move |source| FaultError::Io { path, source }
    }

    pub fn load(&self) -> Result<Faults, FaultError> {
        let p = self.path();
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| FaultError::Corrupt { path: p.display().to_string(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Faults::default()),
            Err(e) => Err(self.io(&p)(e)),
        }
    }

    /// Loads, lets `f` change the faults, saves atomically; all under an exclusive lock.
    pub fn update<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> Result<(Faults, R), FaultError> {
        let lock_path = self.dir.join("faults.lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(self.io(&lock_path))?;
        lock.lock().map_err(self.io(&lock_path))?;
        let mut faults = self.load()?;
        let r = f(&mut faults);
        self.save(&faults)?;
        drop(lock);
        Ok((faults, r))
    }

    pub fn save(&self, faults: &Faults) -> Result<(), FaultError> {
        let p = self.path();
        let tmp = self.dir.join("faults.json.tmp");
        let body = serde_json::to_vec_pretty(faults).expect("faults serialize");
        std::fs::write(&tmp, body).map_err(self.io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(self.io(&p))
    }

    /// Appends one line to `faults.log`: every injection and heal is logged.
    pub fn log(&self, line: &str) -> Result<(), FaultError> {
        let p = self.dir.join("faults.log");
        let mut f = OpenOptions::new().create(true).append(true).open(&p).map_err(self.io(&p))?;
        let _ = File::sync_data(&f);
        writeln!(f, "{line}").map_err(self.io(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_heal_bump_generation() {
        let mut f = Faults::default();
        assert!(f.set(&Fault::Partition { a: "b".into(), b: "a".into() }, true));
        assert!(f.partitions.contains(&("a".to_string(), "b".to_string())));
        assert!(!f.set(&Fault::Partition { a: "a".into(), b: "b".into() }, true));
        assert_eq!(f.generation, 1);
        assert!(f.set(&Fault::Partition { a: "a".into(), b: "b".into() }, false));
        assert!(f.is_empty());
        f.set(&Fault::Isolate { host: "i-1".into() }, true);
        assert!(f.heal_all());
        assert!(f.is_empty());
        assert_eq!(f.generation, 4);
    }

    #[test]
    fn store_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let s = FaultStore::new(d.path());
        assert_eq!(s.load().unwrap(), Faults::default());
        s.update(|f| f.set(&Fault::Blackout { region: "us-east-1".into() }, true)).unwrap();
        assert!(s.load().unwrap().blackout.contains("us-east-1"));
    }
}
