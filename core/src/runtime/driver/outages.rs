//! Sink failures counted per outage, as OBS counts them: the reconnect budget
//! (`max_reconnect_attempts`) applies to consecutive failures, and a session that did its job
//! (it confirmed a fragment, or stayed up for `max_reconnect_delay`) ends the outage, so a
//! stream that fails now and then over weeks never runs out of attempts.

use std::time::{Duration, Instant};

use crate::reconnect::ReconnectPolicy;

/// The current outage, if any, and the session the sink runs now.
#[derive(Debug)]
pub(crate) struct Outages {
    current: Option<Outage>,
    session_started: Instant,
    /// Fragments published (confirmed) when the current session started.
    published_before_session: u64,
    /// A reconnect is done but not yet logged: that waits until the output is live.
    awaiting_live: bool,
}

/// Consecutive failures with no good session between them.
#[derive(Debug, Clone, Copy)]
struct Outage {
    started: Instant,
    attempts: u32,
}

/// What to log once the output of a reconnected session is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub(crate) attempts: u32,
    /// From the failure that began the outage until the output went live again.
    pub(crate) outage: Duration,
}

impl Outages {
    /// The first session starts now, with `published` fragments published before it.
    pub(crate) fn new(published: u64) -> Self {
        Self {
            current: None,
            session_started: Instant::now(),
            published_before_session: published,
            awaiting_live: false,
        }
    }

    /// The current session failed, `published` fragments having been published so far.
    /// Unless it failed without doing its job, a new outage begins.
    pub(crate) fn session_failed(&mut self, published: u64, policy: &ReconnectPolicy) {
        let did_its_job = published > self.published_before_session
            || self.session_started.elapsed() >= policy.max_delay;
        if did_its_job || self.current.is_none() {
            self.current = Some(Outage {
                started: Instant::now(),
                attempts: 0,
            });
        }
        self.awaiting_live = false;
    }

    /// Counts a reconnect attempt of the current outage; returns its number (from 1).
    pub(crate) fn next_attempt(&mut self) -> u32 {
        let outage = self.current.get_or_insert(Outage {
            started: Instant::now(),
            attempts: 0,
        });
        outage.attempts += 1;
        outage.attempts
    }

    /// How long the current outage has lasted.
    pub(crate) fn outage_duration(&self) -> Duration {
        self.current
            .map(|outage| outage.started.elapsed())
            .unwrap_or_default()
    }

    /// A new session started after a failure, `published` fragments having been published.
    pub(crate) fn session_started(&mut self, published: u64) {
        self.session_started = Instant::now();
        self.published_before_session = published;
        self.awaiting_live = true;
    }

    /// Whether a reconnect waits for the output to go live before it is logged.
    pub(crate) fn awaiting_live(&self) -> bool {
        self.awaiting_live
    }

    /// The output of the reconnected session is live since `since`: what to log, once.
    pub(crate) fn live(&mut self, since: Instant) -> Option<Recovered> {
        if !std::mem::take(&mut self.awaiting_live) {
            return None;
        }
        self.current.map(|outage| Recovered {
            attempts: outage.attempts,
            outage: since.saturating_duration_since(outage.started),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_delay: Duration) -> ReconnectPolicy {
        ReconnectPolicy::from_option(5, Duration::ZERO, max_delay)
    }

    #[test]
    fn attempts_add_up_until_a_session_confirms_a_fragment() {
        let policy = policy(Duration::from_secs(3600));
        let mut outages = Outages::new(0);
        outages.session_failed(0, &policy);
        assert_eq!(outages.next_attempt(), 1);
        outages.session_started(0);
        // Failed again before publishing anything: the same outage.
        outages.session_failed(0, &policy);
        assert_eq!(outages.next_attempt(), 2);
        assert_eq!(outages.next_attempt(), 3);
        outages.session_started(0);
        assert!(outages.awaiting_live());
        let now = Instant::now();
        assert_eq!(
            outages.live(now).map(|recovered| recovered.attempts),
            Some(3)
        );
        assert_eq!(outages.live(now), None, "logged once");
        // This session published a fragment: the next failure begins a new outage.
        outages.session_failed(1, &policy);
        assert_eq!(outages.next_attempt(), 1);
    }

    #[test]
    fn a_session_that_stayed_up_long_enough_ends_the_outage() {
        let policy = policy(Duration::ZERO);
        let mut outages = Outages::new(0);
        outages.session_failed(0, &policy);
        assert_eq!(outages.next_attempt(), 1);
        outages.session_started(0);
        outages.session_failed(0, &policy);
        assert_eq!(outages.next_attempt(), 1);
    }
}
