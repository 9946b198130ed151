//! The running source: listing, settling, sending in order, and `on_done` once published.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use futures::stream::{FuturesOrdered, StreamExt};
use notify::Watcher;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::CheckpointFile;
use streampub_core::plugin::{
    async_trait, CancellationToken, Fragment, FragmentBody, FragmentInfo, FragmentOutcome, Source,
    SourceError,
};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::config::OnDone;
use super::scan::{self, Candidate, Readiness, SettleTracker};
use crate::name_order::NamePatterns;
use crate::source_state::{load_state, save_state};

pub(crate) struct DirectorySource {
    pub(crate) pipeline: String,
    pub(crate) directory: PathBuf,
    pub(crate) pattern: NamePatterns,
    /// Files published before all others found in the same scan (init segments).
    pub(crate) init_pattern: Option<NamePatterns>,
    pub(crate) follow: bool,
    pub(crate) settle: Duration,
    pub(crate) empty_timeout: Duration,
    pub(crate) on_done: OnDone,
    pub(crate) done_dir: Option<PathBuf>,
    pub(crate) poll_interval: Duration,
    pub(crate) checkpoint: Option<CheckpointFile>,
}

/// What the source remembers across runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DirectoryState {
    /// The sequence number the next new fragment gets; the first is 1.
    next_sequence: u64,
    /// Files published and still present in the directory (`on_done: keep`), or published and
    /// not yet moved or deleted.
    completed: BTreeSet<String>,
}

impl Default for DirectoryState {
    fn default() -> Self {
        Self {
            next_sequence: 1,
            completed: BTreeSet::new(),
        }
    }
}

/// What the filesystem watcher reports.
enum WatchEvent {
    Changed,
    /// A file appeared by rename: it is complete.
    RenamedInto(String),
}

/// A file's length and modification time: whether it changed since it was sent.
type Version = (u64, SystemTime);

fn version(candidate: &Candidate) -> Version {
    (candidate.length, candidate.modified)
}

/// The source's bookkeeping for one run.
struct RunState {
    saved: DirectoryState,
    /// Sent and not yet acknowledged, as they were when sent.
    in_flight: HashMap<String, Version>,
    /// Failed in this run, as they were when sent: offered again once changed, or on the next
    /// start.
    failed: HashMap<String, Version>,
    /// Entries already reported as unusable, and empty files already reported as waiting
    /// (reported once each).
    reported: HashSet<String>,
    settle: SettleTracker,
}

impl RunState {
    fn is_open(&self, candidate: &Candidate) -> bool {
        !(self.saved.completed.contains(&candidate.name)
            || self.in_flight.contains_key(&candidate.name)
            || self.failed.get(&candidate.name) == Some(&version(candidate)))
    }
}

#[async_trait]
impl Source for DirectorySource {
    async fn run(
        self: Box<Self>,
        output: mpsc::Sender<Fragment>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let saved = load_state(self.checkpoint.as_ref()).await?;
        let mut state = RunState {
            saved,
            in_flight: HashMap::new(),
            failed: HashMap::new(),
            reported: HashSet::new(),
            settle: SettleTracker::new(self.settle, self.empty_timeout),
        };
        let (watch_tx, mut watch_rx) = mpsc::unbounded_channel();
        // Held for the whole run; dropping it stops the notifications. A run that does not
        // follow the directory needs none (its rescans find files still being written), and
        // an inotify instance costs the kernel several milliseconds to tear down at exit.
        let _watcher = if self.follow {
            self.watch(watch_tx)
        } else {
            None
        };
        let mut deliveries = FuturesOrdered::new();
        let mut candidates = Vec::new();
        let mut rescan = true;
        let mut first_scan = true;
        loop {
            if rescan {
                let listing = self.scan().await?;
                self.report_unusable(&mut state, listing.unusable);
                candidates = listing.candidates;
                self.finish_completed(&mut state, &candidates).await;
                if std::mem::take(&mut first_scan) && !state.saved.completed.is_empty() {
                    info!(
                        event = "source_resumed",
                        pipeline = %self.pipeline,
                        already_published = state.saved.completed.len(),
                        "{} files in {} were published by an earlier run; they are not published again",
                        state.saved.completed.len(),
                        self.directory.display()
                    );
                }
                rescan = false;
            }
            let open: Vec<&Candidate> = candidates
                .iter()
                .filter(|candidate| state.is_open(candidate))
                .collect();
            // Finished sending: end the output first (a sink may confirm its last fragments only
            // when its input ends), then wait for the acknowledgements after the loop.
            if !self.follow && open.is_empty() {
                break;
            }

            // Send complete files in order until the queue is full or a file is not complete.
            let now = Instant::now();
            let mut wait = self.poll_interval;
            let mut queue_full = false;
            for candidate in open {
                match state.settle.check(candidate, now) {
                    Readiness::WaitFor(delay) => {
                        wait = wait.min(delay);
                        break;
                    }
                    // Its writer has not written it yet; files after it wait, to keep the order,
                    // until `empty_timeout`.
                    Readiness::Empty(left) => {
                        self.report_empty(&mut state, candidate, left);
                        wait = wait.min(left);
                        break;
                    }
                    Readiness::Ready => match output.try_reserve() {
                        Ok(permit) => {
                            let (fragment, delivery) = self.fragment(candidate, &mut state.saved);
                            debug!(pipeline = %self.pipeline, "Queued {}", candidate.name);
                            state
                                .in_flight
                                .insert(candidate.name.clone(), version(candidate));
                            let name = candidate.name.clone();
                            deliveries.push_back(async move { (name, delivery.await) });
                            permit.send(fragment);
                        }
                        Err(mpsc::error::TrySendError::Full(())) => {
                            queue_full = true;
                            break;
                        }
                        Err(mpsc::error::TrySendError::Closed(())) => {
                            self.drain(deliveries, &mut state).await;
                            return Ok(());
                        }
                    },
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((name, outcome)) = deliveries.next(), if !deliveries.is_empty() => {
                    self.settle_outcome(&mut state, name, outcome).await;
                }
                Some(event) = watch_rx.recv() => {
                    handle_watch_event(&mut state, event);
                    // Coalesce a burst of events (a file being written) into one rescan.
                    while let Ok(event) = watch_rx.try_recv() {
                        handle_watch_event(&mut state, event);
                    }
                    rescan = true;
                }
                permit = output.reserve(), if queue_full => {
                    // Room again: go round and send the next file.
                    drop(permit);
                }
                () = tokio::time::sleep(wait) => rescan = true,
            }
        }
        drop(output);
        self.drain(deliveries, &mut state).await;
        Ok(())
    }
}

fn handle_watch_event(state: &mut RunState, event: WatchEvent) {
    if let WatchEvent::RenamedInto(name) = event {
        state.settle.renamed_in(name);
    }
}

impl DirectorySource {
    /// Logs once that an empty file holds back the files after it for at most `left`.
    fn report_empty(&self, state: &mut RunState, candidate: &Candidate, left: Duration) {
        if state.reported.insert(candidate.name.clone()) {
            warn!(
                event = "fragment_waiting",
                pipeline = %self.pipeline,
                fragment = %candidate.name,
                reason = "empty",
                wait_ms = left.as_millis() as u64,
                "{} in {} is empty: the files after it wait for it at most {} s more \
                 (`empty_timeout`)",
                candidate.name,
                self.directory.display(),
                left.as_secs_f64().ceil()
            );
        }
    }

    /// Logs each unusable entry once.
    fn report_unusable(&self, state: &mut RunState, unusable: Vec<(String, String)>) {
        for (name, problem) in unusable {
            if state.reported.insert(name.clone()) {
                error!(
                    event = "entry_unusable",
                    pipeline = %self.pipeline,
                    fragment = %name,
                    error = %problem,
                    "{name} in {} cannot be published: {problem}",
                    self.directory.display()
                );
            }
        }
    }

    async fn scan(&self) -> Result<scan::Listing, SourceError> {
        let directory = self.directory.clone();
        let pattern = self.pattern.clone();
        let init_pattern = self.init_pattern.clone();
        tokio::task::spawn_blocking(move || scan::scan(&directory, &pattern, init_pattern.as_ref()))
            .await
            .map_err(|error| SourceError::new(error.to_string()))?
            .map_err(|error| {
                SourceError::new(format!("cannot list {}: {error}", self.directory.display()))
            })
    }

    fn fragment(
        &self,
        candidate: &Candidate,
        saved: &mut DirectoryState,
    ) -> (Fragment, streampub_core::plugin::FragmentDelivery) {
        let info = FragmentInfo {
            sequence: saved.next_sequence,
            name: candidate.name.clone(),
            length: Some(candidate.length),
        };
        saved.next_sequence += 1;
        let (fragment, delivery) = Fragment::new(info, FragmentBody::File(candidate.path.clone()));
        let fragment = fragment.with_if_failed(format!(
            "it stays in {} and is offered again when it changes or on the next start",
            self.directory.display()
        ));
        (fragment, delivery)
    }

    /// Forgets published files that left the directory, and finishes `on_done` for published
    /// files still present (a crash may have come between checkpoint and move).
    async fn finish_completed(&self, state: &mut RunState, candidates: &[Candidate]) {
        let present: HashSet<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
        let before = state.saved.completed.len();
        state
            .saved
            .completed
            .retain(|name| present.contains(name.as_str()));
        if state.saved.completed.len() != before {
            save_state(&self.pipeline, self.checkpoint.as_ref(), &state.saved).await;
        }
        if self.on_done != OnDone::Keep {
            for name in state.saved.completed.clone() {
                self.apply_on_done(&name).await;
            }
        }
    }

    async fn settle_outcome(&self, state: &mut RunState, name: String, outcome: FragmentOutcome) {
        let sent_as = state.in_flight.remove(&name);
        match outcome {
            FragmentOutcome::Delivered => {
                state.settle.forget(&name);
                state.saved.completed.insert(name.clone());
                // Checkpoint first: a crash before the move then only means moving it later.
                save_state(&self.pipeline, self.checkpoint.as_ref(), &state.saved).await;
                self.apply_on_done(&name).await;
            }
            // The runtime's `fragment_failed` line said what happened and what happens now.
            FragmentOutcome::Failed(message) => {
                debug!(pipeline = %self.pipeline, "Fragment {name} failed: {message}");
                if let Some(version) = sent_as {
                    state.failed.insert(name, version);
                }
            }
            FragmentOutcome::Abandoned => {
                debug!(pipeline = %self.pipeline, "Fragment {name} abandoned; it is published on the next start");
            }
        }
    }

    async fn apply_on_done(&self, name: &str) {
        let path = self.directory.join(name);
        let result = match (self.on_done, &self.done_dir) {
            (OnDone::Keep, _) => return,
            (OnDone::Delete, _) => tokio::fs::remove_file(&path).await,
            (OnDone::Move, Some(done_dir)) => tokio::fs::rename(&path, done_dir.join(name)).await,
            (OnDone::Move, None) => unreachable!("validate requires done_dir for on_done: move"),
        };
        match result {
            Ok(()) => info!(
                event = "fragment_done",
                pipeline = %self.pipeline,
                fragment = %name,
                action = %on_done_verb(self.on_done).to_lowercase(),
                "{} {name} after publishing",
                on_done_verb(self.on_done)
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => warn!(
                event = "fragment_done_failed",
                pipeline = %self.pipeline,
                fragment = %name,
                error = %error,
                "Published {name} but could not apply on_done ({:?}): {error}",
                self.on_done
            ),
        }
    }

    /// Awaits every outstanding acknowledgement so the state saved is final.
    async fn drain<F>(&self, mut deliveries: FuturesOrdered<F>, state: &mut RunState)
    where
        F: std::future::Future<Output = (String, FragmentOutcome)>,
    {
        while let Some((name, outcome)) = deliveries.next().await {
            self.settle_outcome(state, name, outcome).await;
        }
    }

    /// Starts inotify on the directory. Without it the periodic rescan still finds new files.
    fn watch(
        &self,
        events: mpsc::UnboundedSender<WatchEvent>,
    ) -> Option<notify::RecommendedWatcher> {
        let handler = move |result: notify::Result<notify::Event>| {
            let Ok(event) = result else {
                let _ = events.send(WatchEvent::Changed);
                return;
            };
            use notify::event::{EventKind, ModifyKind, RenameMode};
            // Opening and reading (our own scans and reads included) changes nothing; reacting
            // to it would rescan in a loop.
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let renamed_to = match event.kind {
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event.paths.first(),
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.get(1),
                _ => None,
            };
            let name = renamed_to.and_then(|path| file_name(path));
            let _ = events.send(match name {
                Some(name) => WatchEvent::RenamedInto(name),
                None => WatchEvent::Changed,
            });
        };
        let watched = notify::recommended_watcher(handler).and_then(|mut watcher| {
            watcher.watch(&self.directory, notify::RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match watched {
            Ok(watcher) => {
                info!(
                    event = "source_watching",
                    pipeline = %self.pipeline,
                    path = %self.directory.display(),
                    "Watching {} for new files",
                    self.directory.display()
                );
                Some(watcher)
            }
            Err(error) => {
                warn!(
                    pipeline = %self.pipeline,
                    "Cannot watch {} ({error}); rescanning every {:?} instead",
                    self.directory.display(),
                    self.poll_interval
                );
                None
            }
        }
    }
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

fn on_done_verb(on_done: OnDone) -> &'static str {
    match on_done {
        OnDone::Keep => "Kept",
        OnDone::Delete => "Deleted",
        OnDone::Move => "Moved",
    }
}
