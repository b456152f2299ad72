//! The per-client-address limit on unauthenticated reads (`GET /v1/book`,
//! `GET /v1/contract/book`): `public_reads_per_s_max` a second with bursts of
//! `public_reads_burst_max`, per peer IP address (GCRA, `governor`). Over it the gateway
//! answers 429 with `Retry-After`, before any work. The peer address is the TCP peer: a
//! proxy in front of the gateway makes all its clients one address (it should limit too).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// How often addresses whose allowance is full again are forgotten (bounds the memory a
/// scan of many source addresses can take).
pub const FORGET_EVERY: Duration = Duration::from_secs(10);

pub struct PublicReads {
    /// None: no limit (`public_reads_per_s_max` = 0).
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl PublicReads {
    pub fn new(per_s_max: u32, burst_max: u32) -> PublicReads {
        let limiter = NonZeroU32::new(per_s_max).map(|rate| {
            let burst = NonZeroU32::new(burst_max).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        PublicReads { limiter }
    }

    /// `Ok` if `ip` may read now (and counts the read), else how long until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(l) = &self.limiter else { return Ok(()) };
        l.check_key(&ip).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets addresses that are back to a full allowance; returns how many are kept.
    pub fn forget_idle(&self) -> usize {
        let Some(l) = &self.limiter else { return 0 };
        l.retain_recent();
        l.shrink_to_fit();
        l.len()
    }
}

/// `Retry-After` in whole seconds (at least 1) for a wait of `d`.
pub fn retry_after_s(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_over_its_burst_waits_while_another_reads() {
        let r = PublicReads::new(1, 3);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(r.check(a), Ok(()));
        }
        let wait = r.check(a).expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(r.check(b), Ok(()));
    }

    #[test]
    fn zero_means_no_limit() {
        let r = PublicReads::new(0, 0);
        assert!((0..1000).all(|_| r.check("10.0.0.1".parse().unwrap()).is_ok()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_s(Duration::ZERO), 1);
        assert_eq!(retry_after_s(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_s(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_s(Duration::from_millis(1500)), 2);
    }
}
