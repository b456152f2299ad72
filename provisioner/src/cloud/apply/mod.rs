//! Performs one action: EC2 in `ec2.rs`, Route53 in `route53.rs`. Creations carry their tags
//! in the same call (TagSpecifications), so an interrupted run leaves nothing that the next
//! run cannot find.

mod ec2;
mod route53;

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use super::{Cloud, CloudError};
use crate::action::{Action, IpRef, Ref};

/// What a creating step made: its id and, for instances, its addresses.
#[derive(Debug, Clone, Default)]
pub struct Created {
    pub id: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
}

pub type Outputs = HashMap<String, Created>;

fn other(resource: &str, region: &str, message: impl Into<String>) -> CloudError {
    CloudError::Other { resource: resource.into(), region: region.into(), message: message.into() }
}

impl Cloud {
    pub async fn apply(&self, a: &Action, out: &Outputs) -> Result<Option<Created>, CloudError> {
        if a.is_route53() {
            self.apply_route53(a, out).await
        } else {
            self.apply_ec2(a, out).await
        }
    }

    fn id(&self, r: &Ref, out: &Outputs, region: &str) -> Result<String, CloudError> {
        match r {
            Ref::Id(id) => Ok(id.clone()),
            Ref::Key(k) => out.get(k).map(|c| c.id.clone()).ok_or_else(|| other(k, region, "not created by an earlier step")),
        }
    }

    fn ip(&self, r: &IpRef, out: &Outputs) -> Result<String, CloudError> {
        match r {
            IpRef::Known(ip) => Ok(ip.clone()),
            IpRef::OfInstance { key, address } => {
                let c = out.get(key).ok_or_else(|| other(key, "global", "instance not created by an earlier step"))?;
                let ip = address.pick(c.private_ip.as_ref(), c.public_ip.as_ref());
                ip.ok_or_else(|| other(key, "global", format!("instance has no {} IP", address.as_str())))
            }
        }
    }

    /// One creating call (its tags already in the request): an error names the operation,
    /// the resource and the region; the step's output is the id `id` finds in the answer.
    /// `call` builds the request anew for each attempt (see [`eventually`]).
    async fn create<T, E, R, F>(
        &self,
        op: &str,
        key: &str,
        region: &str,
        call: impl Fn() -> F,
        id: impl FnOnce(&T) -> Option<&str>,
    ) -> Result<Option<Created>, CloudError>
    where
        F: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let answer = self.eventually(op, key, region, call).await?;
        Ok(Some(Created { id: id(&answer).unwrap_or_default().to_string(), ..Default::default() }))
    }

    /// One call whose answer carries nothing the plan needs.
    async fn call<T, E, R, F>(&self, op: &str, resource: &str, region: &str, call: impl Fn() -> F) -> Result<(), CloudError>
    where
        F: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        self.eventually(op, resource, region, call).await.map(|_| ())
    }

    /// EC2 is eventually consistent: an id used right after its create can answer
    /// `Invalid*.NotFound` for a few seconds. Such answers are retried with jittered exponential
    /// backoff, at most [`CONSISTENCY_ATTEMPTS_MAX`] times (9 to 18 s in all); throttling and
    /// transient errors are retried by the SDK itself (see `cloud::sdk_config`).
    async fn eventually<T, E, R, F>(&self, op: &str, resource: &str, region: &str, call: impl Fn() -> F) -> Result<T, CloudError>
    where
        F: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let mut attempt = 1;
        loop {
            match call().await.map_err(|e| self.err(op, resource, region, e)) {
                Err(CloudError::Api { code, .. }) if is_not_yet_visible(&code) && attempt < CONSISTENCY_ATTEMPTS_MAX => {
                    tracing::info!(op, resource, region, attempt, code, "not visible yet (EC2 is eventually consistent); retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// One deleting call: what is already gone is success, which makes `down` re-runnable.
    async fn delete<T, E, R, F>(&self, op: &str, resource: &str, region: &str, call: impl Fn() -> F) -> Result<Option<Created>, CloudError>
    where
        F: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match call().await.map_err(|e| self.err(op, resource, region, e)) {
            Err(CloudError::Api { code, .. }) if code.contains("NotFound") || code.starts_with("NoSuch") => Ok(None),
            r => r.map(|_| None),
        }
    }
}

/// Attempts of one call that names an id EC2 may not show yet.
const CONSISTENCY_ATTEMPTS_MAX: u32 = 8;
const CONSISTENCY_BACKOFF_MS_FIRST: u64 = 200;
const CONSISTENCY_BACKOFF_MS_MAX: u64 = 4_000;

/// EC2's answers for an id it does not show yet (`InvalidVpcID.NotFound`, `NatGatewayNotFound`, ...).
pub(crate) fn is_not_yet_visible(code: &str) -> bool {
    code.ends_with("NotFound") && !code.starts_with("NoSuch")
}

/// Exponential backoff with "equal jitter" (one of AWS's published variants): uniform in
/// [c/2, c] with c = min(cap, first * 2^attempt). Half of each wait is fixed, so the retries of
/// one call always span at least half the sum of the ceilings (about 9 s for
/// [`CONSISTENCY_ATTEMPTS_MAX`] attempts): full jitter could draw near-zero waits and give up
/// while EC2 still hides a new id.
pub(crate) fn backoff(attempt: u32) -> std::time::Duration {
    let ceiling_ms = CONSISTENCY_BACKOFF_MS_FIRST.saturating_mul(1 << attempt.min(10)).min(CONSISTENCY_BACKOFF_MS_MAX);
    let half_ms = ceiling_ms / 2;
    std::time::Duration::from_millis(half_ms + rand::random::<u64>() % (ceiling_ms - half_ms + 1))
}

/// An error with one of `codes` means the change is already there.
fn already_done(r: Result<(), CloudError>, codes: &[&str]) -> Result<Option<Created>, CloudError> {
    match r {
        Err(CloudError::Api { code, .. }) if codes.contains(&code.as_str()) => Ok(None),
        r => r.map(|_| None),
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn consistency_retries_always_span_the_window_and_stay_bounded() {
        for _ in 0..1000 {
            let total_ms: u128 = (1..CONSISTENCY_ATTEMPTS_MAX).map(|a| backoff(a).as_millis()).sum();
            assert!((9_000..=18_000).contains(&total_ms), "{total_ms} ms");
        }
    }
}
