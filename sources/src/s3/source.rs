//! The running source: listing, sending in key order, checkpointing and `on_done` once every
//! required destination has confirmed an object.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    async_trait, CancellationToken, CheckpointFile, Fragment, FragmentBody, FragmentInfo,
    FragmentOutcome, Source, SourceError,
};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::client::{ListedObject, S3Client};
use super::config::OnDone;
use super::object::S3Object;
use super::store_error::StoreError;
use crate::name_order::{is_ignored, last_part, publication_order, NamePatterns};
use crate::source_state::{load_state, save_state};

/// The longest pause between listings of a store that is unavailable.
const MAX_LISTING_PAUSE: Duration = Duration::from_secs(30);
/// How often `on_done` is tried again for a published object it could not move or delete.
const ON_DONE_RETRY: Duration = Duration::from_secs(60);

pub(crate) struct S3Source {
    pub(crate) pipeline: String,
    pub(crate) client: Arc<S3Client>,
    pub(crate) prefix: String,
    pub(crate) pattern: NamePatterns,
    pub(crate) init_pattern: Option<NamePatterns>,
    pub(crate) follow: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) on_done: OnDone,
    pub(crate) done_prefix: Option<String>,
    pub(crate) retry_for: Duration,
    pub(crate) checkpoint: Option<CheckpointFile>,
}

/// What the source remembers across runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct S3State {
    /// The sequence number the next new fragment gets; the first is 1.
    next_sequence: u64,
    /// Objects published and still under the prefix (`on_done: keep`), or published and not
    /// yet moved or deleted, by key.
    completed: BTreeMap<String, Published>,
}

/// What a published object was: the same key with another size or ETag is a new upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Published {
    size: u64,
    etag: String,
}

impl Default for S3State {
    fn default() -> Self {
        Self {
            next_sequence: 1,
            completed: BTreeMap::new(),
        }
    }
}

fn published(object: &ListedObject) -> Published {
    Published {
        size: object.size,
        etag: object.etag.clone(),
    }
}

/// The source's bookkeeping for one run.
struct RunState {
    saved: S3State,
    /// Sent and not yet acknowledged, as listed when sent.
    in_flight: HashMap<String, Published>,
    /// Failed in this run, as listed when sent: offered again once uploaded anew, or on the
    /// next start.
    failed: HashMap<String, Published>,
    /// When `on_done` is next tried again for published objects still under the prefix.
    on_done_retry: Option<Instant>,
    /// Keys already reported as unusable (once each).
    reported: HashSet<String>,
}

impl RunState {
    fn is_open(&self, object: &ListedObject) -> bool {
        let this = published(object);
        !(self.saved.completed.get(&object.key) == Some(&this)
            || self.in_flight.contains_key(&object.key)
            || self.failed.get(&object.key) == Some(&this))
    }
}

#[async_trait]
impl Source for S3Source {
    async fn run(
        self: Box<Self>,
        output: mpsc::Sender<Fragment>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut state = RunState {
            saved: load_state(self.checkpoint.as_ref()).await?,
            in_flight: HashMap::new(),
            failed: HashMap::new(),
            on_done_retry: None,
            reported: HashSet::new(),
        };
        let mut deliveries = FuturesOrdered::new();
        let mut objects: Vec<ListedObject> = Vec::new();
        let mut list_now = true;
        let mut first_listing = true;
        let mut listing_failures = 0u32;
        loop {
            let mut wait = self.poll_interval;
            if list_now {
                match self.list().await {
                    Ok((listed, unusable)) => {
                        self.report_unusable(&mut state, unusable);
                        if listing_failures > 0 {
                            info!(event = "store_available", pipeline = %self.pipeline,
                                "The store answers again: {}", self.client.describe(&self.prefix));
                        }
                        listing_failures = 0;
                        objects = listed;
                        self.finish_completed(&mut state, &objects).await;
                        if std::mem::take(&mut first_listing) && !state.saved.completed.is_empty() {
                            info!(
                                event = "source_resumed",
                                pipeline = %self.pipeline,
                                already_published = state.saved.completed.len(),
                                "{} objects under {} were published by an earlier run; they are not published again",
                                state.saved.completed.len(),
                                self.client.describe(&self.prefix)
                            );
                        }
                    }
                    Err(StoreError::Lasting(message)) => {
                        // The output ends first: a sink may confirm its last fragments only then.
                        drop(output);
                        self.drain(deliveries, &mut state).await;
                        return Err(SourceError::new(message));
                    }
                    Err(StoreError::Passing(message)) => {
                        listing_failures += 1;
                        if listing_failures == 1 {
                            warn!(event = "store_unavailable", pipeline = %self.pipeline,
                                error = %message,
                                "{message}; listing again with backoff, up to every {} s",
                                MAX_LISTING_PAUSE.as_secs());
                        }
                        wait = listing_pause(listing_failures);
                    }
                }
                list_now = false;
            }
            let open: Vec<&ListedObject> = objects
                .iter()
                .filter(|object| state.is_open(object))
                .collect();
            // Finished sending: end the output first (a sink may confirm its last fragments only
            // when its input ends), then wait for the acknowledgements after the loop.
            if !self.follow && listing_failures == 0 && open.is_empty() {
                break;
            }
            let mut queue_full = false;
            for object in open {
                match output.try_reserve() {
                    Ok(permit) => {
                        let (fragment, delivery) = self.fragment(object, &mut state.saved);
                        debug!(pipeline = %self.pipeline, "Queued {}", object.key);
                        state
                            .in_flight
                            .insert(object.key.clone(), published(object));
                        let key = object.key.clone();
                        deliveries.push_back(async move { (key, delivery.await) });
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
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((key, outcome)) = deliveries.next(), if !deliveries.is_empty() => {
                    self.settle_outcome(&mut state, key, outcome).await;
                }
                permit = output.reserve(), if queue_full => drop(permit),
                () = tokio::time::sleep(wait) => list_now = true,
            }
        }
        drop(output);
        self.drain(deliveries, &mut state).await;
        Ok(())
    }
}

/// 1 s, 2 s, 4 s ... up to `MAX_LISTING_PAUSE`.
fn listing_pause(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_LISTING_PAUSE)
}

impl S3Source {
    /// A key without the prefix it was listed under.
    fn after_prefix<'a>(&self, key: &'a str) -> &'a str {
        key.strip_prefix(self.prefix.as_str()).unwrap_or(key)
    }

    /// The objects to publish, in publication order: under the prefix, not under
    /// `done_prefix`, whose last part matches the pattern and is no temporary name.
    /// Keys with a `.` or `..` segment are left out and returned apart: a URL cannot name them
    /// (it resolves the segment), so they could be neither read nor moved.
    async fn list(&self) -> Result<(Vec<ListedObject>, Vec<String>), StoreError> {
        let client = Arc::clone(&self.client);
        let prefix = self.prefix.clone();
        let mut objects = tokio::task::spawn_blocking(move || client.list(&prefix, None))
            .await
            .map_err(|error| StoreError::Passing(error.to_string()))??;
        let (unusable, mut objects): (Vec<ListedObject>, Vec<ListedObject>) =
            objects.drain(..).partition(|object| {
                object
                    .key
                    .split('/')
                    .any(|segment| segment == "." || segment == "..")
            });
        objects.retain(|object| {
            let name = last_part(&object.key);
            !object.key.ends_with('/')
                && !self
                    .done_prefix
                    .as_deref()
                    .is_some_and(|done| object.key.starts_with(done))
                && !is_ignored(name)
                && self.pattern.matches(name)
        });
        objects.sort_by(|a, b| {
            publication_order(
                self.after_prefix(&a.key),
                self.after_prefix(&b.key),
                self.init_pattern.as_ref(),
            )
        });
        Ok((
            objects,
            unusable.into_iter().map(|object| object.key).collect(),
        ))
    }

    fn report_unusable(&self, state: &mut RunState, keys: Vec<String>) {
        for key in keys {
            if state.reported.insert(key.clone()) {
                error!(
                    event = "entry_unusable",
                    pipeline = %self.pipeline,
                    fragment = %key,
                    error = "its key has a `.` or `..` segment, which no URL can name",
                    "{} cannot be published: its key has a `.` or `..` segment, which no URL \
                     can name; rename it",
                    self.client.describe(&key)
                );
            }
        }
    }

    fn fragment(
        &self,
        object: &ListedObject,
        saved: &mut S3State,
    ) -> (Fragment, streampub_core::plugin::FragmentDelivery) {
        let info = FragmentInfo {
            sequence: saved.next_sequence,
            name: self.after_prefix(&object.key).to_owned(),
            length: Some(object.size),
        };
        saved.next_sequence += 1;
        let body = S3Object::new(
            Arc::clone(&self.client),
            self.pipeline.clone(),
            object.clone(),
            self.retry_for,
        );
        let (fragment, delivery) = Fragment::new(info, FragmentBody::Remote(Arc::new(body)));
        let fragment = fragment.with_if_failed(format!(
            "it stays in the bucket and is offered again when uploaded anew or on the next start ({})",
            self.client.describe(&object.key)
        ));
        (fragment, delivery)
    }

    /// Forgets published objects that left the prefix or were uploaded again (another size or
    /// ETag: a new object, published as such), and finishes `on_done` for published objects
    /// still there (a crash between checkpoint and move, a move that failed): on the first
    /// listing, then at most every `ON_DONE_RETRY`.
    async fn finish_completed(&self, state: &mut RunState, objects: &[ListedObject]) {
        let present: HashMap<&str, Published> = objects
            .iter()
            .map(|object| (object.key.as_str(), published(object)))
            .collect();
        let before = state.saved.completed.len();
        state
            .saved
            .completed
            .retain(|key, done| present.get(key.as_str()) == Some(done));
        if state.saved.completed.len() != before {
            save_state(&self.pipeline, self.checkpoint.as_ref(), &state.saved).await;
        }
        let due = state.on_done_retry.is_none_or(|at| Instant::now() >= at);
        if self.on_done == OnDone::Keep || state.saved.completed.is_empty() || !due {
            return;
        }
        state.on_done_retry = Some(Instant::now() + ON_DONE_RETRY);
        let pending: Vec<(String, Published)> = state
            .saved
            .completed
            .iter()
            .map(|(key, done)| (key.clone(), done.clone()))
            .collect();
        for (key, done) in pending {
            self.apply_on_done(&key, &done.etag).await;
        }
    }

    async fn settle_outcome(&self, state: &mut RunState, key: String, outcome: FragmentOutcome) {
        let sent_as = state.in_flight.remove(&key);
        match outcome {
            FragmentOutcome::Delivered => {
                if let Some(sent_as) = sent_as {
                    state.saved.completed.insert(key.clone(), sent_as);
                }
                // Checkpoint first: a crash before the move then only means moving it later.
                save_state(&self.pipeline, self.checkpoint.as_ref(), &state.saved).await;
                let etag = state
                    .saved
                    .completed
                    .get(&key)
                    .map(|done| done.etag.clone());
                // The next listing, which no longer finds it once moved or deleted, forgets it.
                if let Some(etag) = etag {
                    self.apply_on_done(&key, &etag).await;
                }
            }
            // The runtime's `fragment_failed` line said what happened and what happens now.
            FragmentOutcome::Failed(message) => {
                debug!(pipeline = %self.pipeline, "Fragment {key} failed: {message}");
                if let Some(sent_as) = sent_as {
                    state.failed.insert(key, sent_as);
                }
            }
            FragmentOutcome::Abandoned => {
                debug!(pipeline = %self.pipeline, "Fragment {key} abandoned; it is published on the next start");
            }
        }
    }

    /// Applies `on_done` to `key`, listed with `etag`.
    async fn apply_on_done(&self, key: &str, etag: &str) {
        let target = match (self.on_done, &self.done_prefix) {
            (OnDone::Keep, _) => return,
            (OnDone::Delete, _) => None,
            (OnDone::Move, Some(done_prefix)) => {
                Some(format!("{done_prefix}{}", self.after_prefix(key)))
            }
            (OnDone::Move, None) => unreachable!("validate requires done_prefix for on_done: move"),
        };
        let client = Arc::clone(&self.client);
        let (source, moved_to, etag) = (key.to_owned(), target.clone(), etag.to_owned());
        let result = tokio::task::spawn_blocking(move || {
            if let Some(target) = &moved_to {
                client.copy(&source, &etag, target)?;
            }
            client.delete(&source)
        })
        .await
        .unwrap_or_else(|error| Err(StoreError::Passing(error.to_string())));
        let action = match target {
            Some(_) => "moved",
            None => "deleted",
        };
        match result {
            Ok(()) => {
                info!(
                    event = "fragment_done",
                    pipeline = %self.pipeline,
                    fragment = %self.after_prefix(key),
                    action,
                    "{action} {} after publishing{}",
                    self.client.describe(key),
                    target.map(|target| format!(" (to {target})")).unwrap_or_default()
                );
            }
            // It stays checkpointed: a later listing that finds it tries again.
            Err(error) => {
                warn!(
                    event = "fragment_done_failed",
                    pipeline = %self.pipeline,
                    fragment = %self.after_prefix(key),
                    error = %error,
                    "Published {} but could not apply on_done ({action}): {error}; tried again \
                     in {} s",
                    self.client.describe(key),
                    ON_DONE_RETRY.as_secs()
                );
            }
        }
    }

    /// Awaits every outstanding acknowledgement so the state saved is final.
    async fn drain<F>(&self, mut deliveries: FuturesOrdered<F>, state: &mut RunState)
    where
        F: std::future::Future<Output = (String, FragmentOutcome)>,
    {
        while let Some((key, outcome)) = deliveries.next().await {
            self.settle_outcome(state, key, outcome).await;
        }
    }
}
