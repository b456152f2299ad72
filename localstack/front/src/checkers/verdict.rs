//! One checker's verdict on one check, and Route53's judgement over all checkers. No IO.

use super::config::{CheckConfig, Kind};
use std::time::SystemTime;

/// A checker counts a check healthy when MORE than this share of checkers see it healthy.
pub const HEALTHY_SHARE_PERCENT: usize = 18;
/// Depth bound for calculated checks over calculated children.
const CALCULATED_DEPTH_MAX: usize = 4;

/// One probe's result with Route53's status text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub ok: bool,
    pub status: String,
    pub at: SystemTime,
}

/// A checker's verdict flips after `FailureThreshold` consecutive results the other way; new
/// checks start healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub healthy: bool,
    streak: u32,
    pub last: Option<Observation>,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict { healthy: true, streak: 0, last: None }
    }
}

impl Verdict {
    pub fn record(&mut self, obs: Observation, threshold: u32) {
        if obs.ok == self.healthy {
            self.streak = 0;
        } else {
            self.streak += 1;
            if self.streak >= threshold.max(1) {
                self.healthy = obs.ok;
                self.streak = 0;
            }
        }
        self.last = Some(obs);
    }
}

/// Healthy when more than 18 % of the checkers see it healthy.
pub fn share_healthy(verdicts: &[Verdict]) -> bool {
    let up = verdicts.iter().filter(|v| v.healthy).count();
    up * 100 > HEALTHY_SHARE_PERCENT * verdicts.len()
}

/// A check's health as Route53 judges it; `lookup` finds a check's config and verdicts by id.
pub fn judge<'a>(id: &str, lookup: &impl Fn(&str) -> Option<(&'a CheckConfig, &'a [Verdict])>) -> Option<bool> {
    judge_at(id, lookup, 0)
}

fn judge_at<'a>(id: &str, lookup: &impl Fn(&str) -> Option<(&'a CheckConfig, &'a [Verdict])>, depth: usize) -> Option<bool> {
    let (c, verdicts) = lookup(id)?;
    if c.disabled {
        return Some(true);
    }
    let raw = match c.kind {
        Kind::Calculated if depth < CALCULATED_DEPTH_MAX => {
            let up = c.children.iter().filter(|ch| judge_at(ch, lookup, depth + 1) == Some(true)).count();
            up >= c.health_threshold as usize
        }
        Kind::Calculated => false,
        Kind::Unprobed => true,
        Kind::Http | Kind::Https | Kind::Tcp => share_healthy(verdicts),
    };
    Some(raw != c.inverted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(ok: bool) -> Observation {
        Observation { ok, status: String::new(), at: SystemTime::now() }
    }

    fn verdicts(up: usize, n: usize) -> Vec<Verdict> {
        (0..n).map(|i| Verdict { healthy: i < up, ..Verdict::default() }).collect()
    }

    #[test]
    fn flips_after_threshold_consecutive_results() {
        let mut v = Verdict::default();
        v.record(obs(false), 2);
        assert!(v.healthy);
        v.record(obs(true), 2);
        v.record(obs(false), 2);
        assert!(v.healthy);
        v.record(obs(false), 2);
        assert!(!v.healthy);
        v.record(obs(true), 1);
        assert!(v.healthy);
    }

    #[test]
    fn more_than_18_percent_of_checkers() {
        assert!(share_healthy(&verdicts(2, 8)));
        assert!(!share_healthy(&verdicts(1, 8)));
        assert!(!share_healthy(&verdicts(0, 8)));
    }

    fn cfg(id: &str, kind: Kind) -> CheckConfig {
        CheckConfig {
            id: id.into(),
            kind,
            ip: None,
            fqdn: None,
            port: 80,
            path: "/".into(),
            search: None,
            interval_s: 10,
            failure_threshold: 1,
            inverted: false,
            disabled: false,
            children: vec![],
            health_threshold: 0,
        }
    }

    #[test]
    fn inverted_disabled_and_calculated() {
        let up = verdicts(8, 8);
        let down = verdicts(0, 8);
        let a = cfg("a", Kind::Http);
        let b = cfg("b", Kind::Http);
        let calc = CheckConfig { children: vec!["a".into(), "b".into()], health_threshold: 2, ..cfg("c", Kind::Calculated) };
        let inv = CheckConfig { inverted: true, ..cfg("i", Kind::Http) };
        let off = CheckConfig { disabled: true, ..cfg("d", Kind::Http) };
        let lookup = |id: &str| -> Option<(&CheckConfig, &[Verdict])> {
            match id {
                "a" => Some((&a, &up)),
                "b" => Some((&b, &down)),
                "c" => Some((&calc, &[])),
                "i" => Some((&inv, &up)),
                "d" => Some((&off, &down)),
                _ => None,
            }
        };
        assert_eq!(judge("b", &lookup), Some(false));
        assert_eq!(judge("c", &lookup), Some(false));
        assert_eq!(judge("i", &lookup), Some(false));
        assert_eq!(judge("d", &lookup), Some(true));
        assert_eq!(judge("x", &lookup), None);
        let calc1 = CheckConfig { health_threshold: 1, ..calc.clone() };
        let lookup1 = |id: &str| if id == "c" { Some((&calc1, &[][..])) } else { lookup(id) };
        assert_eq!(judge("c", &lookup1), Some(true));
    }
}
