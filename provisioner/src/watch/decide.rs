//! The watch's decision ladder, pure: one tick of probe results in, named decisions out.
//! No IO, no clock: the caller passes the tick's time.
//!
//! A region's state is derived from its probe. The primary region *fails a probe* when no
//! gateway answers `/health` 200; the DR region fails one when nothing of it answers at all
//! (its gateways answer 503 while it is a standby, which is fine). Auto-failover needs the
//! primary to have failed `failures_min` consecutive probes from here AND as many from the
//! second vantage point, and the DR region to have answered this tick.

use std::collections::BTreeMap;

use serde::Serialize;

/// One region's probe results of one tick.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub region: String,
    /// Gateways that answered `/health` with 200.
    pub gateways_ok: usize,
    /// Gateways that answered `/health` with any HTTP status.
    pub gateways_answered: usize,
    pub gateways_total: usize,
    /// Whether a DB host's Patroni REST API answered.
    pub db_answered: bool,
    /// Some(true): a running `leader` (takes writes); Some(false): a running `standby_leader`
    /// (read-only standby cluster); None: no running leader, or no answer.
    pub db_writable: Option<bool>,
    /// Patroni's leader (`leader db-0`, `standby_leader db-3`) or why there is none.
    pub db_leader: String,
    /// The largest replication lag Patroni reports among the members, in bytes.
    pub db_lag_bytes_max: Option<u64>,
}

impl Probe {
    /// Anything of the region answered this tick.
    pub fn reachable(&self) -> bool {
        self.gateways_answered > 0 || self.db_answered
    }
}

/// Everything one tick observed.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    /// Unix time of the tick, in ms.
    pub at_unix_ms: u64,
    /// The region holding the primary role, and the standby.
    pub primary: String,
    pub dr: String,
    pub probes: Vec<Probe>,
    /// The primary region seen from the second vantage point: Some(true) healthy,
    /// Some(false) failed, None no answer from the vantage point (or not asked).
    pub second_vantage_ok: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failed probes (from each vantage point) before the primary counts as dead.
    pub failures_min: u32,
    pub auto_failover: bool,
    /// How long a primary region that still answers (its gateways say 503: a commit stall,
    /// a DB failover inside the region) is left to recover by itself before it counts as
    /// lost. A region that answers nothing is not given this time.
    pub in_region_recovery_ms_max: u64,
}

/// What a region looks like this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not probed yet.
    Unknown,
    /// Every gateway answers `/health` 200.
    Healthy,
    /// Some gateways answer 200, not all.
    Degraded,
    /// Gateways answer, none with 200 (a primary that cannot serve).
    Unhealthy,
    /// A DR region that answers and does not serve writes: what it should be.
    Standby,
    /// Nothing of the region answered.
    Unreachable,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Unknown => "unknown",
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Unhealthy => "unhealthy",
            State::Standby => "standby",
            State::Unreachable => "unreachable",
        })
    }
}

/// What changed: the region's serving state, or its database's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    Region,
    Db,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Decision {
    Transition { region: String, aspect: Aspect, from: String, to: String, reason: String },
    FailOver { from: String, to: String, reason: String },
    Hold { reason: String },
}

/// What the ladder remembers between ticks.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    /// Consecutive failed probes per region, from here.
    failures_here: BTreeMap<String, u32>,
    /// Unix ms of the first failed probe of each region's latest streak (kept after recovery).
    first_failure_unix_ms: BTreeMap<String, u64>,
    /// Consecutive failures of the primary seen from the second vantage point.
    failures_second: u32,
    state: BTreeMap<String, State>,
    db: BTreeMap<String, String>,
    /// The last Hold emitted, so an unchanged one is not repeated every tick.
    last_hold: Option<String>,
    failed_over: bool,
}

impl Tracker {
    pub fn failures_here(&self, region: &str) -> u32 {
        self.failures_here.get(region).copied().unwrap_or(0)
    }
    pub fn failures_second(&self) -> u32 {
        self.failures_second
    }
    pub fn first_failure_unix_ms(&self) -> &BTreeMap<String, u64> {
        &self.first_failure_unix_ms
    }
    pub fn state(&self, region: &str) -> State {
        self.state.get(region).copied().unwrap_or(State::Unknown)
    }
}

/// The state of `p` for a region in the given role.
pub fn state_of(p: &Probe, primary: bool) -> State {
    if !p.reachable() {
        return State::Unreachable;
    }
    if p.gateways_total > 0 && p.gateways_ok == p.gateways_total {
        return State::Healthy;
    }
    if p.gateways_ok > 0 {
        return State::Degraded;
    }
    if primary {
        State::Unhealthy
    } else {
        State::Standby
    }
}

/// Whether the region failed this tick's probe (see the module doc).
pub fn failed(p: &Probe, primary: bool) -> bool {
    if primary {
        p.gateways_ok == 0
    } else {
        !p.reachable()
    }
}

fn describe(p: &Probe) -> String {
    let lag = p.db_lag_bytes_max.map(|b| format!(", lag max {b} B")).unwrap_or_default();
    format!("{}/{} gateways /health 200, {} answered; db: {}{lag}", p.gateways_ok, p.gateways_total, p.gateways_answered, p.db_leader)
}

fn missing(region: &str) -> Probe {
    Probe { region: region.to_string(), db_leader: "not probed".into(), ..Probe::default() }
}

/// One rung per tick: transitions first, then at most one of Hold or FailOver for the primary.
/// After a FailOver nothing more is decided (the caller stops watching).
pub fn decide(t: &mut Tracker, tick: &Tick, policy: &Policy) -> Vec<Decision> {
    let mut out = Vec::new();
    if t.failed_over {
        return out;
    }
    let probe = |r: &str| tick.probes.iter().find(|p| p.region == r).cloned().unwrap_or_else(|| missing(r));
    let (pp, dp) = (probe(&tick.primary), probe(&tick.dr));

    for (p, is_primary) in [(&pp, true), (&dp, false)] {
        let region = p.region.clone();
        let now = state_of(p, is_primary);
        let before = t.state(&region);
        if now != before {
            out.push(Decision::Transition {
                region: region.clone(),
                aspect: Aspect::Region,
                from: before.to_string(),
                to: now.to_string(),
                reason: describe(p),
            });
            t.state.insert(region.clone(), now);
        }
        let db_before = t.db.get(&region).cloned().unwrap_or_else(|| "unknown".into());
        if p.db_leader != db_before {
            out.push(Decision::Transition {
                region: region.clone(),
                aspect: Aspect::Db,
                from: db_before,
                to: p.db_leader.clone(),
                reason: describe(p),
            });
            t.db.insert(region.clone(), p.db_leader.clone());
        }
        let n = t.failures_here.entry(region.clone()).or_insert(0);
        if failed(p, is_primary) {
            if *n == 0 {
                t.first_failure_unix_ms.insert(region.clone(), tick.at_unix_ms);
            }
            *n += 1;
        } else {
            *n = 0;
        }
    }
    // Unknown (no answer from the vantage point) is not a failure and breaks the streak.
    t.failures_second = if tick.second_vantage_ok == Some(false) { t.failures_second + 1 } else { 0 };

    let here = t.failures_here(&tick.primary);
    if here == 0 {
        t.last_hold = None;
        return out;
    }
    match ladder(t, tick, policy, here, &dp) {
        Rung::Hold(reason) => {
            if t.last_hold.as_deref() != Some(reason.as_str()) {
                t.last_hold = Some(reason.clone());
                out.push(Decision::Hold { reason });
            }
        }
        Rung::FailOver(reason) => {
            t.failed_over = true;
            out.push(Decision::FailOver { from: tick.primary.clone(), to: tick.dr.clone(), reason });
        }
    }
    out
}

enum Rung {
    Hold(String),
    FailOver(String),
}

/// The named checks, in order; the first that is not met holds.
fn ladder(t: &Tracker, tick: &Tick, policy: &Policy, here: u32, dr: &Probe) -> Rung {
    let (p, n, second) = (&tick.primary, policy.failures_min, t.failures_second);
    if here < n {
        return Rung::Hold(format!("primary {p} failed {here}/{n} probes from here: waiting"));
    }
    let first = t.first_failure_unix_ms.get(p).copied().unwrap_or(tick.at_unix_ms);
    let unhealthy_ms = tick.at_unix_ms.saturating_sub(first);
    let answers = tick.probes.iter().find(|x| &x.region == p).is_some_and(Probe::reachable);
    if answers && unhealthy_ms < policy.in_region_recovery_ms_max {
        return Rung::Hold(format!(
            "primary {p} answers but cannot serve for {} s (a DB failover or commit stall inside the region): it has {} s to recover before it counts as lost",
            unhealthy_ms / 1000,
            policy.in_region_recovery_ms_max / 1000
        ));
    }
    if !policy.auto_failover {
        return Rung::Hold(format!(
            "primary {p} failed {n}/{n} probes from here ({second}/{n} from the second vantage point); auto-failover is off: `provision failover --to {}` if it is lost",
            tick.dr
        ));
    }
    if tick.second_vantage_ok.is_none() {
        return Rung::Hold(format!("primary {p} failed {n}/{n} probes from here, but the second vantage point did not answer: not failing over without confirmation"));
    }
    if second < n {
        return Rung::Hold(format!(
            "primary {p} failed {n}/{n} probes from here but only {second}/{n} from the second vantage point: not failing over"
        ));
    }
    if dr.gateways_ok > 0 || dr.db_writable == Some(true) {
        return Rung::Hold(format!(
            "DR {} already serves (gateways {}/{} healthy, db: {}): a failover happened elsewhere? not failing over; restart the watch",
            tick.dr, dr.gateways_ok, dr.gateways_total, dr.db_leader
        ));
    }
    if !dr.reachable() {
        return Rung::Hold(format!(
            "primary {p} is down from both vantage points, but DR {} did not answer this tick: not failing over to it",
            tick.dr
        ));
    }
    Rung::FailOver(format!(
        "primary {p} failed {here} consecutive probes from here and {second} from the second vantage point; DR {} answers",
        tick.dr
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "us-east-1";
    const D: &str = "us-west-2";
    const POLICY: Policy = Policy { failures_min: 3, auto_failover: true, in_region_recovery_ms_max: 60_000 };

    fn primary(ok: usize) -> Probe {
        Probe {
            region: P.into(),
            gateways_ok: ok,
            gateways_answered: ok,
            gateways_total: 3,
            db_answered: ok > 0,
            db_writable: (ok > 0).then_some(true),
            db_leader: if ok > 0 { "leader db-0".into() } else { "no answer".into() },
            db_lag_bytes_max: Some(0),
        }
    }

    fn dr(reachable: bool) -> Probe {
        Probe {
            region: D.into(),
            gateways_ok: 0,
            gateways_answered: if reachable { 3 } else { 0 },
            gateways_total: 3,
            db_answered: reachable,
            db_writable: reachable.then_some(false),
            db_leader: if reachable { "standby_leader db-0".into() } else { "no answer".into() },
            db_lag_bytes_max: None,
        }
    }

    fn tick(i: u64, p_ok: usize, second: Option<bool>, dr_up: bool) -> Tick {
        Tick { at_unix_ms: 1_000 * i, primary: P.into(), dr: D.into(), probes: vec![primary(p_ok), dr(dr_up)], second_vantage_ok: second }
    }

    fn failovers(d: &[Decision]) -> usize {
        d.iter().filter(|d| matches!(d, Decision::FailOver { .. })).count()
    }

    fn holds(d: &[Decision]) -> Vec<String> {
        d.iter().filter_map(|d| if let Decision::Hold { reason } = d { Some(reason.clone()) } else { None }).collect()
    }

    #[test]
    fn a_single_missed_probe_changes_nothing() {
        let mut t = Tracker::default();
        decide(&mut t, &tick(0, 3, Some(true), true), &POLICY);
        let d = decide(&mut t, &tick(1, 0, Some(false), true), &POLICY);
        assert_eq!(failovers(&d), 0);
        assert_eq!(holds(&d), vec![format!("primary {P} failed 1/3 probes from here: waiting")]);
        let d = decide(&mut t, &tick(2, 3, Some(true), true), &POLICY);
        assert_eq!(failovers(&d), 0);
        assert_eq!(t.failures_here(P), 0);
    }

    #[test]
    fn misses_here_with_a_healthy_second_vantage_hold() {
        let mut t = Tracker::default();
        let mut all = Vec::new();
        for i in 0..6 {
            all.extend(decide(&mut t, &tick(i, 0, Some(true), true), &POLICY));
        }
        assert_eq!(failovers(&all), 0);
        let h = holds(&all);
        assert!(h.last().unwrap().contains("only 0/3 from the second vantage point"), "{h:?}");
        assert_eq!(h.iter().filter(|r| r.contains("second vantage")).count(), 1, "an unchanged hold is said once: {h:?}");
    }

    #[test]
    fn an_unanswering_second_vantage_holds() {
        let mut t = Tracker::default();
        let mut all = Vec::new();
        for i in 0..5 {
            all.extend(decide(&mut t, &tick(i, 0, None, true), &POLICY));
        }
        assert_eq!(failovers(&all), 0);
        assert!(holds(&all).last().unwrap().contains("did not answer"));
    }

    #[test]
    fn misses_on_both_vantages_fail_over_exactly_once() {
        let mut t = Tracker::default();
        decide(&mut t, &tick(0, 3, Some(true), true), &POLICY);
        let mut all = Vec::new();
        for i in 1..=2 {
            let d = decide(&mut t, &tick(i, 0, Some(false), true), &POLICY);
            assert_eq!(failovers(&d), 0, "tick {i}");
            all.extend(d);
        }
        let d = decide(&mut t, &tick(3, 0, Some(false), true), &POLICY);
        assert!(matches!(d.last(), Some(Decision::FailOver { from, to, .. }) if from == P && to == D), "{d:?}");
        assert_eq!(failovers(&d), 1);
        for i in 4..8 {
            all.extend(decide(&mut t, &tick(i, 0, Some(false), true), &POLICY));
        }
        assert_eq!(failovers(&all), 0, "no second failover");
        assert_eq!(t.first_failure_unix_ms().get(P), Some(&1_000));
    }

    #[test]
    fn no_failover_without_auto_or_with_an_unreachable_or_serving_dr() {
        let manual = Policy { auto_failover: false, ..POLICY };
        let mut t = Tracker::default();
        let mut all = Vec::new();
        for i in 0..6 {
            all.extend(decide(&mut t, &tick(i, 0, Some(false), true), &manual));
        }
        assert_eq!(failovers(&all), 0);
        assert!(holds(&all).last().unwrap().contains("auto-failover is off"));

        let mut t = Tracker::default();
        let mut all = Vec::new();
        for i in 0..6 {
            all.extend(decide(&mut t, &tick(i, 0, Some(false), false), &POLICY));
        }
        assert_eq!(failovers(&all), 0);
        assert!(holds(&all).last().unwrap().contains("did not answer this tick"));

        let mut t = Tracker::default();
        let mut all = Vec::new();
        for i in 0..6 {
            let mut k = tick(i, 0, Some(false), true);
            k.probes[1].db_writable = Some(true);
            all.extend(decide(&mut t, &k, &POLICY));
        }
        assert_eq!(failovers(&all), 0, "a DR that already takes writes is not failed over to");
        assert!(holds(&all).last().unwrap().contains("already serves"));
    }

    #[test]
    fn a_primary_that_answers_503_gets_time_to_recover_in_region() {
        // Its gateways answer 503 and Patroni answers: a DB failover inside the region.
        let answering = |i: u64| {
            let mut k = tick(i, 0, Some(false), true);
            k.probes[0].gateways_answered = 3;
            k.probes[0].db_answered = true;
            k
        };
        let mut t = Tracker::default();
        decide(&mut t, &tick(0, 3, Some(true), true), &POLICY);
        let mut all = Vec::new();
        for i in 1..=60 {
            all.extend(decide(&mut t, &answering(i), &POLICY));
        }
        assert_eq!(failovers(&all), 0, "{:?}", holds(&all));
        assert!(holds(&all).last().unwrap().contains("has 60 s to recover"), "{:?}", holds(&all));
        let d = decide(&mut t, &answering(61), &POLICY);
        assert_eq!(failovers(&d), 1, "still unhealthy after 60 s: lost");
    }

    #[test]
    fn recovery_resets_the_counts() {
        let mut t = Tracker::default();
        for i in 0..2 {
            decide(&mut t, &tick(i, 0, Some(false), true), &POLICY);
        }
        assert_eq!((t.failures_here(P), t.failures_second()), (2, 2));
        decide(&mut t, &tick(2, 1, Some(true), true), &POLICY);
        assert_eq!((t.failures_here(P), t.failures_second()), (0, 0));
        let mut all = Vec::new();
        for i in 3..5 {
            all.extend(decide(&mut t, &tick(i, 0, Some(false), true), &POLICY));
        }
        assert_eq!(failovers(&all), 0, "two fresh misses are not three");
        assert_eq!(t.first_failure_unix_ms().get(P), Some(&3_000), "a new streak starts a new first failure");
    }

    #[test]
    fn transitions_are_emitted_once_per_change() {
        let mut t = Tracker::default();
        let first = decide(&mut t, &tick(0, 3, Some(true), true), &POLICY);
        let region_changes = |d: &[Decision]| {
            d.iter()
                .filter_map(|d| match d {
                    Decision::Transition { region, aspect: Aspect::Region, from, to, .. } => Some(format!("{region}: {from} -> {to}")),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(region_changes(&first), vec![format!("{P}: unknown -> healthy"), format!("{D}: unknown -> standby")]);
        assert!(decide(&mut t, &tick(1, 3, Some(true), true), &POLICY).is_empty(), "nothing changed, nothing said");
        assert_eq!(region_changes(&decide(&mut t, &tick(2, 2, Some(true), true), &POLICY)), vec![format!("{P}: healthy -> degraded")]);
        let down = decide(&mut t, &tick(3, 0, Some(true), false), &POLICY);
        assert_eq!(region_changes(&down), vec![format!("{P}: degraded -> unreachable"), format!("{D}: standby -> unreachable")]);
        assert!(down.iter().any(|d| matches!(d, Decision::Transition { aspect: Aspect::Db, to, .. } if to == "no answer")));
        let again = decide(&mut t, &tick(4, 0, Some(true), false), &POLICY);
        assert!(region_changes(&again).is_empty());
        assert_eq!(
            region_changes(&decide(&mut t, &tick(5, 3, Some(true), true), &POLICY)),
            vec![format!("{P}: unreachable -> healthy"), format!("{D}: unreachable -> standby")]
        );
    }

    #[test]
    fn a_primary_answering_503_fails_a_standby_answering_503_does_not() {
        let p = Probe { region: P.into(), gateways_answered: 3, gateways_total: 3, ..Probe::default() };
        assert!(failed(&p, true));
        assert_eq!(state_of(&p, true), State::Unhealthy);
        assert!(!failed(&p, false));
        assert_eq!(state_of(&p, false), State::Standby);
    }
}
