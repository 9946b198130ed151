//! Sink failures counted per outage, as OBS counts them: the reconnect budget
//! (`max_reconnect_attempts`) applies to consecutive failures, and a session that did its job
//! (it confirmed a fragment or media beyond what every session before it confirmed, however
//! short it lived, or its output stayed live for `max_reconnect_delay`) ends the outage, so a stream that fails now and then over weeks
//! never runs out of attempts, while a destination that takes the connection and never lets
//! the output advance still runs out of them.

use std::time::{Duration, Instant};

use crate::reconnect::ReconnectPolicy;

/// The current outage, if any, and what the current session has done.
#[derive(Debug)]
pub(crate) struct Outages {
    current: Option<Outage>,
    /// Fragments published (confirmed) when the current session started.
    published_before_session: u64,
    /// Since when the current session's output is live; `None` while it is not (yet).
    live_since: Option<Instant>,
    /// The current session is a reconnect, to be logged once its output is live.
    reconnect_unlogged: bool,
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
            published_before_session: published,
            live_since: None,
            reconnect_unlogged: false,
        }
    }

    /// The current session failed, `published` fragments having been published so far;
    /// `confirmed_media`: its output confirmed media beyond what every session before it did.
    /// Unless it failed without doing its job, a new outage begins.
    pub(crate) fn session_failed(
        &mut self,
        published: u64,
        confirmed_media: bool,
        policy: &ReconnectPolicy,
    ) {
        let did_its_job = published > self.published_before_session
            || confirmed_media
            || self
                .live_since
                .is_some_and(|since| since.elapsed() >= policy.max_delay);
        if did_its_job || self.current.is_none() {
            self.current = Some(Outage {
                started: Instant::now(),
                attempts: 0,
            });
        }
        self.live_since = None;
        self.reconnect_unlogged = false;
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
        self.published_before_session = published;
        self.live_since = None;
        self.reconnect_unlogged = true;
    }

    /// Whether the runtime should ask the sink whether its output is live yet.
    pub(crate) fn watching_live(&self) -> bool {
        self.live_since.is_none()
    }

    /// The current session's output is live since `since`; returns what to log if the session
    /// is a reconnect not yet logged.
    pub(crate) fn went_live(&mut self, since: Instant) -> Option<Recovered> {
        self.live_since.get_or_insert(since);
        if !std::mem::take(&mut self.reconnect_unlogged) {
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
        outages.session_failed(0, false, &policy);
        assert_eq!(outages.next_attempt(), 1);
        outages.session_started(0);
        // Failed again before publishing anything: the same outage.
        outages.session_failed(0, false, &policy);
        assert_eq!(outages.next_attempt(), 2);
        assert_eq!(outages.next_attempt(), 3);
        outages.session_started(0);
        assert!(outages.watching_live());
        let now = Instant::now();
        assert_eq!(
            outages.went_live(now).map(|recovered| recovered.attempts),
            Some(3)
        );
        assert!(!outages.watching_live());
        assert_eq!(outages.went_live(now), None, "logged once");
        // This session published a fragment: the next failure begins a new outage.
        outages.session_failed(1, false, &policy);
        assert_eq!(outages.next_attempt(), 1);
    }

    #[test]
    fn only_a_session_whose_output_stayed_live_long_enough_ends_the_outage() {
        let policy = policy(Duration::ZERO);
        let mut outages = Outages::new(0);
        outages.session_failed(0, false, &policy);
        assert_eq!(outages.next_attempt(), 1);
        outages.session_started(0);
        // Up, but never live (a process that never took input): the same outage.
        outages.session_failed(0, false, &policy);
        assert_eq!(outages.next_attempt(), 2);
        outages.session_started(0);
        outages.went_live(Instant::now());
        outages.session_failed(0, false, &policy);
        assert_eq!(outages.next_attempt(), 1);
        // The first session is watched too, but not logged as a reconnect.
        let mut first = Outages::new(0);
        assert!(first.watching_live());
        assert_eq!(first.went_live(Instant::now()), None);
    }

    #[test]
    fn a_short_session_that_confirmed_media_ends_the_outage() {
        let policy = policy(Duration::from_secs(3600));
        let mut outages = Outages::new(0);
        outages.session_failed(0, false, &policy);
        assert_eq!(outages.next_attempt(), 1);
        outages.session_started(0);
        outages.went_live(Instant::now());
        // Live but nothing confirmed (a server that takes and drops): the same outage.
        outages.session_failed(0, false, &policy);
        assert_eq!(outages.next_attempt(), 2);
        outages.session_started(0);
        // No fragment published, but part of one confirmed: a new outage.
        outages.session_failed(0, true, &policy);
        assert_eq!(outages.next_attempt(), 1);
    }
}
