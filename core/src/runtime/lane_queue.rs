//! One destination's queue in a fan-out: the chunk events the dispatcher hands it, what it
//! signals back (down, pacing, last active), and how the queue is emptied when the destination
//! falls behind.
//!
//! Hand-written rather than an `mpsc` channel because falling behind must take back what is
//! queued: chunks hold the shared read budget, so a destination that stopped taking them would
//! stop every other one. Detaching replaces them with "read it yourself" events
//! ([`ChunkEvent::ReadBody`], [`ChunkEvent::ReadRest`]) that hold no budget.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::fragment::Fragment;
use crate::runtime::chunking::ChunkEvent;

/// What a destination's sink driver tells the dispatcher about itself.
#[derive(Debug)]
pub(crate) struct LaneSignal {
    /// Its session failed and it is reconnecting or resending.
    down: AtomicBool,
    /// Sessions that failed so far: a failure the dispatcher did not see while it lasted
    /// (shorter than its look) still shows.
    failures: AtomicU64,
    /// Its sink is paced: if it runs out of chunks it fills (or its viewers wait).
    paced: AtomicBool,
    /// It waits for the wall clock on purpose (a paced sink ahead of time).
    pacing: AtomicBool,
    /// When it last took an event, got one in an empty queue, or started or stopped pacing or
    /// being down.
    last_active: Mutex<Instant>,
}

impl Default for LaneSignal {
    fn default() -> Self {
        Self {
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            paced: AtomicBool::new(false),
            pacing: AtomicBool::new(false),
            last_active: Mutex::new(Instant::now()),
        }
    }
}

impl LaneSignal {
    pub(crate) fn set_down(&self, down: bool) {
        if down && !self.down.swap(true, Ordering::Relaxed) {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.down.store(down, Ordering::Relaxed);
        self.touch();
    }

    pub(crate) fn set_paced(&self, paced: bool) {
        self.paced.store(paced, Ordering::Relaxed);
    }

    pub(crate) fn is_paced(&self) -> bool {
        self.paced.load(Ordering::Relaxed)
    }

    /// Sessions that failed so far.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn set_pacing(&self, pacing: bool) {
        self.pacing.store(pacing, Ordering::Relaxed);
        self.touch();
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        *self
            .last_active
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Instant::now();
    }

    /// Whether it has been neither taking events nor pacing for `quiet`.
    fn quiet_for(&self, quiet: Duration) -> bool {
        !self.pacing.load(Ordering::Relaxed)
            && self
                .last_active
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .elapsed()
                >= quiet
    }
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<ChunkEvent>,
    /// The dispatcher will send nothing more.
    ended: bool,
    /// The destination stopped reading.
    receiver_gone: bool,
    /// Since when the destination waits for an event with the queue empty (a wait cut short,
    /// as by a filler step, counts as waiting until it takes an event).
    waiting_since: Option<Instant>,
    /// Nothing is handed out until the gate opens (see `Dispatcher::open_gates`).
    gated: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<QueueState>,
    arrived: Notify,
    signal: Arc<LaneSignal>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The dispatcher's end of a destination's queue; dropping it ends the queue.
#[derive(Debug)]
pub(crate) struct LaneQueue(Arc<Shared>);

/// The destination's end of its queue; dropping it drops what is queued.
#[derive(Debug)]
pub(crate) struct LaneReceiver(Arc<Shared>);

/// A queue for one destination whose driver reports on `signal`.
pub(crate) fn lane_queue(signal: Arc<LaneSignal>) -> (LaneQueue, LaneReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        arrived: Notify::new(),
        signal,
    });
    (LaneQueue(Arc::clone(&shared)), LaneReceiver(shared))
}

impl LaneQueue {
    /// Queues `event`; `false` if the destination stopped reading.
    pub(crate) fn push(&self, event: ChunkEvent) -> bool {
        let mut state = self.0.state();
        if state.receiver_gone {
            return false;
        }
        // Quiet time counts from when there was something to take.
        if state.events.is_empty() {
            self.0.signal.touch();
        }
        state.events.push_back(event);
        drop(state);
        self.0.arrived.notify_one();
        true
    }

    pub(crate) fn signal(&self) -> &LaneSignal {
        &self.0.signal
    }

    /// The destination waits for its next event with nothing queued: it has caught up.
    pub(crate) fn is_idle(&self) -> bool {
        self.idle_for().is_some()
    }

    /// How long the destination has been waiting with nothing queued, if it is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        let state = self.0.state();
        match state.events.is_empty() {
            true => state.waiting_since.map(|since| since.elapsed()),
            false => None,
        }
    }

    /// Takes out the fragments queued to be read from their bodies (for the destination that
    /// replaces this one); what is left (the rest of a fragment inside) stays.
    pub(crate) fn take_backlog(&self) -> Vec<Fragment> {
        let mut state = self.0.state();
        let mut backlog = Vec::new();
        let mut kept = VecDeque::new();
        for event in std::mem::take(&mut state.events) {
            match event {
                ChunkEvent::ReadBody(fragment) => backlog.push(fragment),
                other => kept.push_back(other),
            }
        }
        state.events = kept;
        backlog
    }

    /// Whether anything is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.state().events.is_empty()
    }

    /// Whether the start of fragment `sequence` is still queued (not yet taken).
    pub(crate) fn holds_start_of(&self, sequence: u64) -> bool {
        self.0.state().events.iter().any(|event| {
            matches!(event, ChunkEvent::Begin(fragment) | ChunkEvent::ReadBody(fragment)
                if fragment.info.sequence == sequence)
        })
    }

    /// Holds what is queued from now on back from the destination.
    pub(crate) fn close_gate(&self) {
        self.0.state().gated = true;
    }

    pub(crate) fn open_gate(&self) {
        self.0.state().gated = false;
        self.0.arrived.notify_one();
    }

    /// Fragments queued to be read from their bodies.
    pub(crate) fn backlog(&self) -> usize {
        self.0
            .state()
            .events
            .iter()
            .filter(|event| matches!(event, ChunkEvent::ReadBody(_)))
            .count()
    }

    /// Something is queued and the destination has been quiet for `quiet` (not pacing, not
    /// taking it).
    pub(crate) fn stalled(&self, quiet: Duration) -> bool {
        !self.0.state().events.is_empty() && self.0.signal.quiet_for(quiet)
    }

    /// Empties the queue of chunks for a destination that fell behind, so that it holds none of
    /// the read budget: the fragment it is inside (`streaming`: the one the dispatcher streams to
    /// it now, if its start was taken; or one whose chunks are still queued) it reads the rest
    /// of from the body; every fragment queued after that it reads whole from its body when
    /// `required`, or skips.
    /// Returns how many fragments it skips.
    pub(crate) fn detach(&self, required: bool, streaming: Option<u64>) -> u64 {
        let mut state = self.0.state();
        state.gated = false;
        let events = std::mem::take(&mut state.events);
        let streaming_start_queued = streaming.is_some_and(|sequence| {
            events.iter().any(|event| {
                matches!(event, ChunkEvent::Begin(fragment) | ChunkEvent::ReadBody(fragment)
                    if fragment.info.sequence == sequence)
            })
        });
        let mut events = events.into_iter().peekable();
        let (mut head_data, mut head_failed) = (false, None);
        while let Some(event) = events.next_if(|event| !is_fragment_start(event)) {
            match event {
                ChunkEvent::Failed(message) => head_failed = Some(message),
                _ => head_data = true,
            }
        }
        let inside_streaming = streaming.is_some() && !streaming_start_queued;
        if let Some(message) = head_failed {
            state.events.push_back(ChunkEvent::Failed(message));
        } else if head_data || inside_streaming {
            state.events.push_back(ChunkEvent::ReadRest);
        }
        let mut skipped = Vec::new();
        for event in events {
            match event {
                ChunkEvent::Begin(fragment) | ChunkEvent::ReadBody(fragment) if required => {
                    state.events.push_back(ChunkEvent::ReadBody(fragment))
                }
                ChunkEvent::Begin(fragment) | ChunkEvent::ReadBody(fragment) => {
                    skipped.push(fragment)
                }
                // The chunks, end or failure of a fragment now read from its body (or skipped).
                _ => {}
            }
        }
        drop(state);
        self.0.arrived.notify_one();
        // Outside the lock: dropping the skipped copies tells their joins.
        skipped.len() as u64
    }
}

fn is_fragment_start(event: &ChunkEvent) -> bool {
    matches!(event, ChunkEvent::Begin(_) | ChunkEvent::ReadBody(_))
}

impl Drop for LaneQueue {
    fn drop(&mut self) {
        self.0.state().ended = true;
        self.0.arrived.notify_one();
    }
}

impl LaneReceiver {
    /// The next event; `None` once the dispatcher ended the queue and it is empty.
    pub(crate) async fn recv(&mut self) -> Option<ChunkEvent> {
        loop {
            {
                let mut state = self.0.state();
                let next = match state.gated && !state.ended {
                    true => None,
                    false => state.events.pop_front(),
                };
                if let Some(event) = next {
                    state.waiting_since = None;
                    drop(state);
                    self.0.signal.touch();
                    return Some(event);
                }
                if state.ended && state.events.is_empty() {
                    return None;
                }
                state.waiting_since.get_or_insert_with(Instant::now);
            }
            // `notify_one` keeps a permit when nobody waits, so an event pushed between the
            // check above and this wait is not missed.
            self.0.arrived.notified().await;
        }
    }
}

impl Drop for LaneReceiver {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.receiver_gone = true;
        let events = std::mem::take(&mut state.events);
        drop(state);
        // Outside the lock: dropping fragments tells their joins.
        drop(events);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::fragment::{Fragment, FragmentBody, FragmentInfo};
    use crate::runtime::chunking::Chunk;

    fn begin(sequence: u64) -> ChunkEvent {
        let info = FragmentInfo {
            sequence,
            name: format!("f{sequence}"),
            length: Some(3),
        };
        let (fragment, _) = Fragment::new(info, FragmentBody::Memory(Bytes::from("abc")));
        ChunkEvent::Begin(fragment)
    }

    fn chunk() -> ChunkEvent {
        ChunkEvent::Chunk(Chunk::detached(Bytes::from("abc")))
    }

    /// What is queued, in short: `rest`, `body 2`, `begin 3`, `chunk`, `end`.
    fn queued(queue: &LaneQueue) -> Vec<String> {
        queue
            .0
            .state()
            .events
            .iter()
            .map(|event| match event {
                ChunkEvent::ReadRest => "rest".to_owned(),
                ChunkEvent::ReadBody(fragment) => format!("body {}", fragment.info.sequence),
                ChunkEvent::Begin(fragment) => format!("begin {}", fragment.info.sequence),
                ChunkEvent::Chunk(_) => "chunk".to_owned(),
                ChunkEvent::End => "end".to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn filled(events: Vec<ChunkEvent>) -> (LaneQueue, LaneReceiver) {
        let (queue, receiver) = lane_queue(Arc::default());
        for event in events {
            assert!(queue.push(event));
        }
        (queue, receiver)
    }

    #[test]
    fn a_required_destination_reads_the_rest_and_every_later_fragment_from_the_files() {
        // Inside fragment 1; 2 queued whole; 3 being streamed.
        let (queue, _receiver) = filled(vec![
            chunk(),
            ChunkEvent::End,
            begin(2),
            chunk(),
            ChunkEvent::End,
            begin(3),
            chunk(),
        ]);
        assert_eq!(queue.detach(true, Some(3)), 0);
        assert_eq!(queued(&queue), ["rest", "body 2", "body 3"]);
        assert_eq!(queue.backlog(), 2);
    }

    #[test]
    fn a_replaced_destination_hands_over_what_it_has_not_started() {
        let (queue, _receiver) = filled(vec![chunk(), ChunkEvent::End, begin(2), chunk()]);
        queue.detach(true, Some(2));
        let backlog = queue.take_backlog();
        assert_eq!(backlog.len(), 1);
        assert_eq!(backlog[0].info.sequence, 2);
        assert_eq!(
            queued(&queue),
            ["rest"],
            "the rest of its own fragment stays"
        );
    }

    #[test]
    fn a_destination_that_is_not_required_finishes_its_fragment_and_skips_the_others() {
        let (queue, _receiver) =
            filled(vec![chunk(), ChunkEvent::End, begin(2), chunk(), begin(3)]);
        assert_eq!(queue.detach(false, Some(3)), 2);
        assert_eq!(queued(&queue), ["rest"]);
    }

    #[test]
    fn a_destination_inside_the_streamed_fragment_with_nothing_queued_reads_its_rest() {
        let (queue, _receiver) = filled(Vec::new());
        assert_eq!(queue.detach(true, Some(3)), 0);
        assert_eq!(queued(&queue), ["rest"]);
        // Between fragments nothing is to be read.
        let (queue, _receiver) = filled(Vec::new());
        queue.detach(true, None);
        assert!(queued(&queue).is_empty());
    }

    #[tokio::test]
    async fn the_receiver_gets_what_was_pushed_and_ends_with_the_queue() {
        let (queue, mut receiver) = filled(vec![begin(1), chunk(), ChunkEvent::End]);
        assert!(!queue.is_idle());
        assert!(matches!(receiver.recv().await, Some(ChunkEvent::Begin(_))));
        assert!(matches!(receiver.recv().await, Some(ChunkEvent::Chunk(_))));
        assert!(matches!(receiver.recv().await, Some(ChunkEvent::End)));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), receiver.recv());
        assert!(waiting.await.is_err(), "nothing more yet");
        assert!(queue.is_idle());
        drop(queue);
        assert!(receiver.recv().await.is_none());
    }
}
