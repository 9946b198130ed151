//! Writing media no earlier than the wall clock reaches its time (see [`Pacing`]). The wait is
//! a timer, not a parked thread.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sink::Pacing;

/// The clock of one paced sink.
#[derive(Debug)]
pub(crate) struct Pacer {
    pacing: Pacing,
    /// When the anchoring media time was (or is to be) written, and that time.
    anchor: Option<(Instant, Duration)>,
}

impl Pacer {
    pub(crate) fn new(pacing: Pacing) -> Self {
        Self {
            pacing,
            anchor: None,
        }
    }

    /// When media of `time` is due by the wall clock (what was written before it has played
    /// out on a real-time receiver), once the clock is anchored.
    pub(crate) fn due(&self, time: Duration) -> Option<Instant> {
        let (anchor_wall, anchor_media) = self.anchor?;
        match time.checked_sub(anchor_media) {
            Some(ahead) => Some(anchor_wall + ahead),
            None => anchor_wall.checked_sub(anchor_media - time),
        }
    }

    /// Whether the sink goes on with filler when upstream is late.
    pub(crate) fn fills(&self) -> bool {
        self.pacing.filler
    }

    /// Waits until media of `time` is due: the anchor's wall clock plus its distance from the
    /// anchor's media time, less `max_lead`. Returns at once after shutdown (the fragment in
    /// flight then goes out as fast as the sink takes it).
    pub(crate) async fn wait_for(&mut self, time: Duration, shutdown: &CancellationToken) {
        let now = Instant::now();
        let (anchor_wall, anchor_media) = *self.anchor.get_or_insert((now, time));
        let due = match time.checked_sub(anchor_media) {
            Some(ahead) => anchor_wall + ahead,
            // Earlier media than the anchor (a resend after a reconnect): due at once.
            None => return,
        };
        if due + self.pacing.max_lead < now {
            // Behind by more than the lead (upstream was late): follow the wall clock from here.
            self.anchor = Some((now, time));
            return;
        }
        let Some(wake) = due.checked_sub(self.pacing.max_lead) else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn media_leaves_at_its_time_within_the_lead_and_re_anchors_when_late() {
        let shutdown = CancellationToken::new();
        let mut pacer = Pacer::new(Pacing {
            max_lead: Duration::from_secs(2),
            filler: false,
        });
        let start = Instant::now();
        pacer.wait_for(Duration::from_secs(100), &shutdown).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first media anchors the clock"
        );
        assert_eq!(
            pacer.due(Duration::from_secs(130)),
            Some(start + Duration::from_secs(30))
        );
        pacer.wait_for(Duration::from_secs(101), &shutdown).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "within the lead");
        pacer.wait_for(Duration::from_secs(110), &shutdown).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(8),
            "10 s of media, 2 s ahead"
        );
        // Upstream is 20 s late: the next media anchors the clock again instead of bursting.
        tokio::time::advance(Duration::from_secs(20)).await;
        pacer.wait_for(Duration::from_secs(111), &shutdown).await;
        let resumed = start.elapsed();
        pacer.wait_for(Duration::from_secs(115), &shutdown).await;
        assert_eq!(start.elapsed() - resumed, Duration::from_secs(2));
        // A shutdown ends every wait.
        shutdown.cancel();
        let before = Instant::now();
        pacer.wait_for(Duration::from_secs(200), &shutdown).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
