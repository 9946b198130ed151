//! Fragments the sink has accepted but not yet confirmed.
//!
//! A sink whose downstream takes bytes later than it accepts them (a process that reads ahead
//! before it publishes) only reports how many of the fragments it ended most recently it has
//! not really taken ([`crate::Sink::unconfirmed`]). Everything else about confirmation lives
//! here: which fragments those are, acknowledging them oldest first as the count drops, and
//! handing them back for a resend when the session fails.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::fragment::{Fragment, FragmentOutcome};

/// Accepted fragments waiting for the sink's confirmation, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Confirmations {
    waiting: VecDeque<Fragment>,
}

impl Confirmations {
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Keeps a fragment the sink has accepted until it confirms it.
    pub(crate) fn push(&mut self, fragment: Fragment) {
        self.waiting.push_back(fragment);
    }

    /// Acknowledges as delivered every waiting fragment but the `still_unconfirmed` newest.
    pub(crate) fn confirm_all_but(&mut self, still_unconfirmed: usize) {
        while self.waiting.len() > still_unconfirmed {
            let fragment = self.waiting.pop_front().expect("longer than zero");
            fragment.acknowledge(FragmentOutcome::Delivered);
        }
    }

    /// The sink closed cleanly: everything it accepted is delivered.
    pub(crate) fn confirm_all(&mut self) {
        self.confirm_all_but(0);
    }

    /// The sink failed for good: nothing waiting will be confirmed.
    pub(crate) fn fail_all(&mut self, message: &Arc<str>) {
        for fragment in self.waiting.drain(..) {
            fragment.acknowledge(FragmentOutcome::Failed(Arc::clone(message)));
        }
    }

    /// Takes every waiting fragment, oldest first, to be sent again in a new session.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = Fragment> + '_ {
        self.waiting.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::fragment::{FragmentBody, FragmentDelivery, FragmentInfo};

    fn fragment(sequence: u64) -> (Fragment, FragmentDelivery) {
        let info = FragmentInfo {
            sequence,
            name: format!("f{sequence}"),
            length: None,
        };
        Fragment::new(info, FragmentBody::Memory(Bytes::new()))
    }

    #[tokio::test]
    async fn the_oldest_are_confirmed_first_and_the_rest_can_be_taken_back() {
        let mut confirmations = Confirmations::default();
        let (deliveries, fragments): (Vec<_>, Vec<_>) = (1..=3)
            .map(|sequence| {
                let (fragment, delivery) = fragment(sequence);
                (delivery, fragment)
            })
            .unzip();
        fragments
            .into_iter()
            .for_each(|fragment| confirmations.push(fragment));
        confirmations.confirm_all_but(2);
        let resent: Vec<u64> = confirmations
            .take_all()
            .map(|fragment| fragment.info.sequence)
            .collect();
        assert_eq!(resent, [2, 3]);
        assert!(confirmations.is_empty());
        let mut deliveries = deliveries.into_iter();
        assert_eq!(deliveries.next().unwrap().await, FragmentOutcome::Delivered);
    }
}
