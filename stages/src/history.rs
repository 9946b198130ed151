//! The state a stage had when each recent fragment began, so that it can go back to it when
//! fragments are sent again after a reconnect ([`streampub_core::plugin::Stage::rewind`]).

use std::collections::VecDeque;

/// Fragments whose starting state is kept at most, should the runtime not say which are
/// published: far more than a sink leaves unconfirmed.
const KEPT: usize = 1024;

/// The starting states of the most recent fragments, oldest first.
#[derive(Debug)]
pub(crate) struct FragmentHistory<S> {
    entries: VecDeque<(u64, S)>,
}

impl<S> Default for FragmentHistory<S> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
        }
    }
}

impl<S> FragmentHistory<S> {
    /// Remembers `state` as the state when fragment `sequence` began.
    pub(crate) fn record(&mut self, sequence: u64, state: S) {
        self.entries.push_back((sequence, state));
        if self.entries.len() > KEPT {
            self.entries.pop_front();
        }
    }

    /// Forgets the states of fragment `sequence` and those before it (published: never sent
    /// again).
    pub(crate) fn forget_through(&mut self, sequence: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(recorded, _)| *recorded <= sequence)
        {
            self.entries.pop_front();
        }
    }

    /// The state when fragment `sequence` began, forgetting it and every later one; `None` if
    /// it is not kept.
    pub(crate) fn rewind_to(&mut self, sequence: u64) -> Option<S> {
        let index = self
            .entries
            .iter()
            .position(|(recorded, _)| *recorded == sequence)?;
        self.entries.drain(index..).next().map(|(_, state)| state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewind_returns_the_state_and_forgets_what_followed() {
        let mut history = FragmentHistory::default();
        for sequence in 1..=3 {
            history.record(sequence, sequence * 10);
        }
        assert_eq!(history.rewind_to(2), Some(20));
        assert_eq!(history.rewind_to(3), None, "forgotten");
        assert_eq!(history.rewind_to(1), Some(10));
        for sequence in 0..(KEPT as u64 + 5) {
            history.record(sequence, sequence);
        }
        assert_eq!(history.rewind_to(0), None, "only the last {KEPT} are kept");
        history.forget_through(KEPT as u64);
        assert_eq!(history.entries.len(), 4, "published ones are forgotten");
        assert_eq!(history.rewind_to(KEPT as u64 + 1), Some(KEPT as u64 + 1));
    }
}
