//! Runs a plan: each step once all its `after` steps succeeded, at most `concurrency` at a
//! time. A failed step skips its dependents; others go on (`down`) or stop launching (`up`).

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::action::Plan;
use crate::cloud::{Cloud, Outputs};
use crate::progress::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Launch nothing new after the first failure (`up`).
    Stop,
    /// Keep going with everything that does not depend on a failure (`down`).
    Continue,
}

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub done: usize,
    /// The ids of what this run created, in the order they were made.
    pub created: Vec<String>,
    pub failed: Vec<StepFailure>,
    pub skipped: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    pub step: String,
    pub error: String,
    /// The cloud refused for now (`DependencyViolation`): something still depends on the
    /// resource, which a fresh look and a later round can remove. See `CloudError::retry_later`.
    pub retry_later: bool,
}

/// Whether every failure in `failed` may clear in a later round (and there is at least one).
pub fn all_retry_later(failed: &[StepFailure]) -> bool {
    !failed.is_empty() && failed.iter().all(|f| f.retry_later)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
    Failed,
    Skipped,
}

pub async fn run(plan: &Plan, cloud: &Cloud, concurrency: usize, on_error: OnError, progress: &Progress) -> Outcome {
    assert!(concurrency > 0, "concurrency must be at least 1");
    let n = plan.steps.len();
    let mut state = vec![State::Waiting; n];
    let mut outputs = Outputs::new();
    let mut outcome = Outcome::default();
    let mut running = FuturesUnordered::new();
    progress.start(n as u64);
    loop {
        let stop_launching = on_error == OnError::Stop && !outcome.failed.is_empty();
        for i in 0..n {
            if state[i] != State::Waiting {
                continue;
            }
            let deps = &plan.steps[i].after;
            if deps.iter().any(|&d| matches!(state[d], State::Failed | State::Skipped)) {
                state[i] = State::Skipped;
                outcome.skipped += 1;
                progress.inc();
                continue;
            }
            if stop_launching || running.len() >= concurrency || !deps.iter().all(|&d| state[d] == State::Done) {
                continue;
            }
            state[i] = State::Running;
            let action = &plan.steps[i].action;
            tracing::info!(step = i, scope = action.scope(), what = %action.describe(), "applying");
            let snapshot = outputs.clone();
            running.push(async move { (i, cloud.apply(action, &snapshot).await) });
        }
        let Some((i, result)) = running.next().await else { break };
        let action = &plan.steps[i].action;
        match result {
            Ok(created) => {
                state[i] = State::Done;
                outcome.done += 1;
                if let (Some(key), Some(c)) = (action.produces(), created) {
                    if !c.id.is_empty() {
                        outcome.created.push(c.id.clone());
                    }
                    outputs.insert(key.to_string(), c);
                }
                progress.step_done(action);
            }
            Err(e) => {
                state[i] = State::Failed;
                let f = StepFailure { step: action.describe(), error: e.to_string(), retry_later: e.retry_later() };
                progress.step_failed(action, &f.error);
                outcome.failed.push(f);
            }
        }
    }
    // Steps never launched because `up` stopped at a failure count as skipped.
    outcome.skipped += state.iter().filter(|s| **s == State::Waiting).count();
    progress.finish();
    outcome
}
