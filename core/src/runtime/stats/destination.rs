//! What a fan-out's destination adds to the counters: its name, its state, what it still owes
//! (its lag) and its last error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::PipelineStats;

/// What a destination's counters add: its name, and what it still owes.
#[derive(Debug)]
pub(super) struct Destination {
    name: String,
    required: bool,
    /// `live`, `behind`, `reconnecting`, `finished` or `failed`.
    state: Mutex<&'static str>,
    /// Fragments handed to it and not yet done with (confirmed, failed or dropped), oldest
    /// first, with when they were handed out.
    owed: Mutex<VecDeque<(u64, Instant)>>,
    last_error: Mutex<Option<String>>,
}

/// Locks `mutex`, whatever a panic elsewhere left in it (counters stay usable).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl PipelineStats {
    /// Adds a destination's counters to a fan-out pipeline's (replacing one of the same name).
    pub(crate) fn add_sink(&self, sink: &str, required: bool) -> Arc<PipelineStats> {
        let mut stats = Self::new(&self.name);
        stats.sink = Some(Destination {
            name: sink.to_owned(),
            required,
            state: Mutex::new("live"),
            owed: Mutex::default(),
            last_error: Mutex::default(),
        });
        let stats = Arc::new(stats);
        let mut sinks = self
            .sinks
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        sinks.retain(|other| other.sink() != Some(sink));
        sinks.push(Arc::clone(&stats));
        stats
    }

    /// Removes a destination a reload took out.
    pub(crate) fn remove_sink(&self, sink: &str) {
        self.sinks
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .retain(|other| other.sink() != Some(sink));
    }

    /// A fan-out's destinations' counters (one a reload added or changed comes last); empty
    /// for one destination.
    pub fn sinks(&self) -> Vec<Arc<PipelineStats>> {
        self.sinks
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// The destination these are the counters of, in a fan-out.
    pub fn sink(&self) -> Option<&str> {
        self.sink.as_ref().map(|sink| sink.name.as_str())
    }

    /// The sink is in an outage (reconnecting or resending) or back.
    pub(crate) fn set_in_outage(&self, outage: bool) {
        self.in_outage
            .store(outage, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the sink is in an outage: reconnecting, or resending what it had not confirmed.
    pub fn in_outage(&self) -> bool {
        self.in_outage.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Names the one destination of a pipeline without a fan-out.
    pub(crate) fn name_sink(&self, name: &str) {
        let _ = self.sink_name.set(name.to_owned());
    }

    /// The destination these counters are about, for metrics' `sink` label: a fan-out's
    /// destination, or a pipeline's one sink.
    pub fn sink_label(&self) -> Option<&str> {
        self.sink().or(self.sink_name.get().map(String::as_str))
    }

    /// Whether this destination's confirmation holds fragments back (`required: true`).
    pub fn sink_required(&self) -> bool {
        self.sink.as_ref().is_some_and(|sink| sink.required)
    }

    /// A destination's state: `live`, `behind`, `reconnecting`, `finished` or `failed`.
    pub fn sink_state(&self) -> &'static str {
        match &self.sink {
            Some(sink) => *lock(&sink.state),
            // A pipeline's one sink is as the pipeline.
            None => match self.state() {
                super::PipelineState::Running if self.in_outage() => "reconnecting",
                super::PipelineState::Running => "live",
                super::PipelineState::Finished => "finished",
                super::PipelineState::Failed(_) => "failed",
            },
        }
    }

    pub(crate) fn set_sink_state(&self, state: &'static str) {
        if let Some(sink) = &self.sink {
            *lock(&sink.state) = state;
        }
    }

    /// The last error a destination's sink reported.
    pub fn last_error(&self) -> Option<String> {
        self.sink
            .as_ref()
            .and_then(|sink| lock(&sink.last_error).clone())
    }

    pub(crate) fn set_last_error(&self, error: &str) {
        if let Some(sink) = &self.sink {
            *lock(&sink.last_error) = Some(error.to_owned());
        }
    }

    /// A fragment was handed to this destination.
    pub(crate) fn owe(&self, sequence: u64) {
        if let Some(sink) = &self.sink {
            lock(&sink.owed).push_back((sequence, Instant::now()));
        }
    }

    /// This destination is done with a fragment (confirmed, failed or dropped it).
    pub(crate) fn settled(&self, sequence: u64) {
        if let Some(sink) = &self.sink {
            lock(&sink.owed).retain(|(owed, _)| *owed != sequence);
        }
    }

    /// Fragments handed to this destination that it is not done with.
    pub fn lag_fragments(&self) -> u64 {
        self.sink
            .as_ref()
            .map_or(0, |sink| lock(&sink.owed).len() as u64)
    }

    /// How long ago the oldest fragment this destination is not done with was handed out.
    pub fn lag_seconds(&self) -> f64 {
        self.sink.as_ref().map_or(0.0, |sink| {
            lock(&sink.owed)
                .front()
                .map_or(0.0, |(_, since)| since.elapsed().as_secs_f64())
        })
    }

    /// Why the pipeline waits instead of reading on, while it does.
    pub fn waiting_for(&self) -> Option<String> {
        lock(&self.waiting_for).clone()
    }

    pub(crate) fn set_waiting_for(&self, reason: Option<String>) {
        *lock(&self.waiting_for) = reason;
    }
}
