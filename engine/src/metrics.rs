//! A tiny Prometheus text registry: named gauges and counters with label strings.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    values: Mutex<BTreeMap<String, (&'static str, f64)>>,
}

impl Metrics {
    /// `series` is a full series name with labels, e.g. `engine_leader{partition="x"}`.
    pub fn set(&self, series: String, v: f64) {
        self.values.lock().unwrap_or_else(|e| e.into_inner()).insert(series, ("gauge", v));
    }
    /// A counter kept elsewhere (e.g. an atomic), copied in at render time.
    pub fn set_counter(&self, series: String, v: f64) {
        self.values.lock().unwrap_or_else(|e| e.into_inner()).insert(series, ("counter", v));
    }
    pub fn inc(&self, series: String) {
        self.add(series, 1.0)
    }
    pub fn add(&self, series: String, v: f64) {
        let mut m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(series).or_insert(("counter", 0.0)).1 += v;
    }
    pub fn render(&self) -> String {
        let m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut typed = std::collections::HashSet::new();
        for (series, (kind, v)) in m.iter() {
            let name = series.split('{').next().unwrap_or(series);
            if typed.insert(name.to_string()) {
                out.push_str(&format!("# TYPE {name} {kind}\n"));
            }
            out.push_str(&format!("{series} {v}\n"));
        }
        out
    }
}

/// Escapes a label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
