//! One destination's queue in a fan-out: the chunk events the dispatcher hands it, what it
//! signals back (down, pacing, last active), and how the queue is emptied when the destination
//! falls behind.
//!
//! Hand-written rather than an `mpsc` channel because falling behind must take back what is
//! queued: chunks hold the shared read budget, so a destination that stopped taking them would
//! stop every other one. Detaching replaces them with "read it yourself" events
//! ([`ChunkEvent::ReadBody`], [`ChunkEvent::ReadRest`]) that hold no budget.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::fragment::Fragment;
use crate::runtime::chunking::ChunkEvent;

/// What a destination's sink driver tells the dispatcher about itself.
#[derive(Debug)]
pub(crate) struct LaneSignal {
    /// Its session failed and it is reconnecting.
    down: AtomicBool,
    /// It waits for the wall clock on purpose (a paced sink ahead of time).
    pacing: AtomicBool,
    /// When it last took an event or stopped pacing.
    last_active: Mutex<Instant>,
}

impl Default for LaneSignal {
    fn default() -> Self {
        Self {
            down: AtomicBool::new(false),
            pacing: AtomicBool::new(false),
            last_active: Mutex::new(Instant::now()),
        }
    }
}

impl LaneSignal {
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
        self.touch();
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
    /// The destination waits for an event and the queue is empty.
    waiting: bool,
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

/// What detaching a destination took out of its queue.
#[derive(Debug, Default)]
pub(crate) struct Detached {
    /// Fragments it will not get (a destination that is not required), not started.
    pub(crate) skipped: Vec<Fragment>,
}

impl LaneQueue {
    /// Queues `event`; `false` if the destination stopped reading.
    pub(crate) fn push(&self, event: ChunkEvent) -> bool {
        let mut state = self.0.state();
        if state.receiver_gone {
            return false;
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
        let state = self.0.state();
        state.waiting && state.events.is_empty()
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
    /// the read budget: the fragment it is inside (`inside`: the one the dispatcher streams to
    /// it now, if its start was taken; or one whose chunks are still queued) it reads the rest
    /// of from the body; every fragment queued after that it reads whole from its body when
    /// `required`, or skips.
    pub(crate) fn detach(&self, required: bool, streaming: Option<u64>) -> Detached {
        let mut state = self.0.state();
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
        let mut detached = Detached::default();
        for event in events {
            match event {
                ChunkEvent::Begin(fragment) | ChunkEvent::ReadBody(fragment) if required => {
                    state.events.push_back(ChunkEvent::ReadBody(fragment))
                }
                ChunkEvent::Begin(fragment) | ChunkEvent::ReadBody(fragment) => {
                    detached.skipped.push(fragment)
                }
                // The chunks, end or failure of a fragment now read from its body (or skipped).
                _ => {}
            }
        }
        drop(state);
        self.0.arrived.notify_one();
        detached
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
                if let Some(event) = state.events.pop_front() {
                    state.waiting = false;
                    drop(state);
                    self.0.signal.touch();
                    return Some(event);
                }
                if state.ended {
                    return None;
                }
                state.waiting = true;
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
