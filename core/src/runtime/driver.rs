//! The sink driver: feeds chunks through the stages into the sink, one fragment at a time,
//! acknowledges each fragment once the sink has fully taken it, and reconnects the sink when it
//! fails with a retryable error, sending the fragment in flight again from its start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::stages::{StageCall, StageChain};
use super::stats::PipelineStats;
use super::PipelineError;
use crate::chunking::{BodyReader, BufferPool, ChunkData, ChunkEvent};
use crate::fragment::{Fragment, FragmentInfo, FragmentOutcome};
use crate::sink::{SessionReason, Sink, SinkError};
use crate::stage::StageItem;
use crate::units::HumanDuration;

/// Chunk progress is logged at DEBUG every this many chunks, as in the seed.
const PROGRESS_EVERY_CHUNKS: u64 = 10;
/// How often an idle driver asks the sink whether it has confirmed more fragments.
const CONFIRMATION_POLL: Duration = Duration::from_millis(100);

pub(crate) struct SinkDriver {
    pub(crate) pipeline: String,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) stages: StageChain,
    pub(crate) stats: Arc<PipelineStats>,
    /// For reading a fragment again after a reconnect.
    pub(crate) chunk_size: usize,
    /// Cancelled on shutdown: the fragment in flight may finish, no new one starts.
    pub(crate) shutdown: CancellationToken,
    pub(crate) shutdown_timeout: Duration,
    /// Fragments the sink has ended but not yet confirmed, oldest first.
    pub(crate) unconfirmed: VecDeque<Fragment>,
}

/// How one delivery of a fragment ended, short of a sink failure.
enum FragmentResult {
    Delivered {
        bytes: u64,
        /// From the first chunk handed to the sink to the last one it accepted.
        transfer_time: Duration,
    },
    /// Its input was bad (unreadable, rejected by a stage): it fails alone, the pipeline goes on.
    InputFailed(String),
}

/// How a delivery that may involve reconnects ended.
enum Recovery {
    Done,
    /// Shutdown came while the sink was reconnecting: what was not confirmed is left for the
    /// next start.
    Interrupted,
}

/// A fragment waiting to be sent again, and whether it was already counted as published.
struct Resend {
    fragment: Fragment,
    published_before: bool,
}

/// Where a fragment's chunks come from: the chunking stage, or the fragment's own body when it
/// is sent again after a reconnect.
enum ChunkInput<'a> {
    Chunker {
        events: &'a mut mpsc::Receiver<ChunkEvent>,
        finished: bool,
    },
    Reread {
        reader: BodyReader,
        chunk_size: usize,
    },
}

/// One step of a fragment's input.
enum InputItem {
    /// A chunk, with its share of the in-flight budget when it came through the chunking stage.
    Chunk(ChunkData, Option<OwnedSemaphorePermit>),
    End,
    Failed(String),
}

impl ChunkInput<'_> {
    async fn next(&mut self) -> Result<InputItem, PipelineError> {
        match self {
            Self::Chunker { events, finished } => {
                let item = match events.recv().await {
                    Some(ChunkEvent::Chunk(chunk)) => {
                        let (data, budget) = chunk.into_parts();
                        InputItem::Chunk(data, Some(budget))
                    }
                    Some(ChunkEvent::End) => InputItem::End,
                    Some(ChunkEvent::Failed(message)) => InputItem::Failed(message),
                    None => {
                        return Err(PipelineError::Internal(
                            "the chunking stage stopped mid-fragment".into(),
                        ))
                    }
                    Some(other) => {
                        return Err(PipelineError::Internal(format!(
                            "chunk event {other:?} inside a fragment"
                        )))
                    }
                };
                *finished = !matches!(item, InputItem::Chunk(..));
                Ok(item)
            }
            Self::Reread { reader, chunk_size } => Ok(match reader.next_chunk(*chunk_size).await {
                Ok(Some(bytes)) => InputItem::Chunk(ChunkData::Bytes(bytes), None),
                Ok(None) => InputItem::End,
                Err(error) => {
                    InputItem::Failed(format!("reading the fragment again failed: {error}"))
                }
            }),
        }
    }

    /// Consumes what is left of the current fragment, so the next event is the next fragment's.
    async fn skip_rest(&mut self) {
        if let Self::Chunker { events, finished } = self {
            while !*finished {
                match events.recv().await {
                    Some(ChunkEvent::Chunk(_)) => {}
                    _ => *finished = true,
                }
            }
        }
    }
}

impl SinkDriver {
    /// Runs until the events end, shutdown, or the sink fails; closes the sink in every case.
    pub(crate) async fn run(
        mut self,
        mut events: mpsc::Receiver<ChunkEvent>,
    ) -> Result<(), PipelineError> {
        let delivered = self.deliver_all(&mut events).await;
        // Release the chunking stage (and with it every fragment still queued) before closing.
        drop(events);
        // At the end of the input the sink takes as long as it needs; after a shutdown request,
        // at most shutdown_timeout.
        let shutdown = self.shutdown.clone();
        let timeout = self.shutdown_timeout;
        let closed = tokio::select! {
            closed = self.close() => closed,
            () = shutdown_deadline(&shutdown, timeout) => Err(PipelineError::Sink(SinkError::fatal(format!(
                "closing the sink took longer than shutdown_timeout ({})",
                HumanDuration(timeout)
            )))),
        };
        delivered.and(closed)
    }

    async fn deliver_all(
        &mut self,
        events: &mut mpsc::Receiver<ChunkEvent>,
    ) -> Result<(), PipelineError> {
        loop {
            let event = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                event = events.recv() => event,
                // While idle, the sink may still confirm what it took last.
                () = tokio::time::sleep(CONFIRMATION_POLL), if !self.unconfirmed.is_empty() => {
                    self.acknowledge_confirmed();
                    continue;
                }
            };
            let fragment = match event {
                None => return Ok(()),
                Some(ChunkEvent::Unreadable(fragment, message)) => {
                    self.fail(fragment, message);
                    continue;
                }
                Some(ChunkEvent::Begin(fragment)) => fragment,
                Some(other) => {
                    return Err(PipelineError::Internal(format!(
                        "chunk event {other:?} outside a fragment"
                    )))
                }
            };
            let shutdown = self.shutdown.clone();
            let deadline = shutdown_deadline(&shutdown, self.shutdown_timeout);
            let result = tokio::select! {
                result = self.publish(fragment, events) => result,
                () = deadline => Err(PipelineError::ShutdownTimeout(self.shutdown_timeout)),
            };
            match result? {
                Recovery::Done => {}
                Recovery::Interrupted => return Ok(()),
            }
        }
    }

    /// Closes the sink; fragments it took are acknowledged. A retryable failure with fragments
    /// unconfirmed sends them to a new session and closes again.
    async fn close(&mut self) -> Result<(), PipelineError> {
        let mut attempt = 0;
        loop {
            match self.sink.close().await {
                Ok(()) => {
                    while let Some(fragment) = self.unconfirmed.pop_front() {
                        fragment.acknowledge(FragmentOutcome::Delivered);
                    }
                    return Ok(());
                }
                Err(error) if error.retryable && !self.unconfirmed.is_empty() => {
                    let queue = self.take_unconfirmed();
                    match self.recover(queue, error, &mut attempt).await? {
                        Recovery::Done => {}
                        Recovery::Interrupted => return Ok(()),
                    }
                }
                Err(error) => {
                    let message: Arc<str> = error.message.clone().into();
                    while let Some(fragment) = self.unconfirmed.pop_front() {
                        fragment.acknowledge(FragmentOutcome::Failed(Arc::clone(&message)));
                    }
                    return Err(PipelineError::Sink(error));
                }
            }
        }
    }

    fn fail(&self, fragment: Fragment, message: String) {
        warn!(
            pipeline = %self.pipeline,
            fragment = %fragment.info.name,
            "Fragment {} failed and was skipped: {message}",
            fragment.info.sequence
        );
        self.stats.record_failed();
        fragment.acknowledge(FragmentOutcome::Failed(message.into()));
    }

    /// Acknowledges, oldest first, the fragments the sink now confirms.
    fn acknowledge_confirmed(&mut self) {
        // Called after every chunk: ask the sink only when something waits for it.
        if self.unconfirmed.is_empty() {
            return;
        }
        let unconfirmed = self.sink.unconfirmed();
        while self.unconfirmed.len() > unconfirmed {
            let fragment = self.unconfirmed.pop_front().expect("longer than zero");
            fragment.acknowledge(FragmentOutcome::Delivered);
        }
    }

    fn take_unconfirmed(&mut self) -> VecDeque<Resend> {
        self.unconfirmed
            .drain(..)
            .map(|fragment| Resend {
                fragment,
                published_before: true,
            })
            .collect()
    }

    /// Logs and counts a fragment the sink has accepted, and keeps it until confirmed.
    fn accepted(
        &mut self,
        fragment: Fragment,
        bytes: u64,
        transfer_time: Duration,
        published_before: bool,
    ) {
        let info = &fragment.info;
        if published_before {
            info!(
                pipeline = %self.pipeline,
                fragment = %info.name,
                "Resent fragment {} ({:.2} KB in {} ms) after reconnecting",
                info.sequence,
                bytes as f64 / 1024.0,
                transfer_time.as_millis(),
            );
        } else {
            let total = self.stats.record_published(bytes, transfer_time);
            info!(
                pipeline = %self.pipeline,
                fragment = %info.name,
                "Published fragment {} ({:.2} KB in {} ms, {} total)",
                info.sequence,
                bytes as f64 / 1024.0,
                transfer_time.as_millis(),
                total,
            );
        }
        self.unconfirmed.push_back(fragment);
        self.acknowledge_confirmed();
    }

    /// Delivers one fragment from the chunking stage; on a retryable sink failure, reconnects
    /// and resends it together with every fragment not yet confirmed.
    async fn publish(
        &mut self,
        fragment: Fragment,
        events: &mut mpsc::Receiver<ChunkEvent>,
    ) -> Result<Recovery, PipelineError> {
        let mut input = ChunkInput::Chunker {
            events,
            finished: false,
        };
        let error = match self.deliver(&fragment.info, &mut input).await {
            Ok(FragmentResult::Delivered {
                bytes,
                transfer_time,
            }) => {
                self.accepted(fragment, bytes, transfer_time, false);
                return Ok(Recovery::Done);
            }
            Ok(FragmentResult::InputFailed(message)) => {
                self.fail(fragment, message);
                return Ok(Recovery::Done);
            }
            Err(PipelineError::Sink(error)) if error.retryable => error,
            Err(error) => {
                self.stats.record_failed();
                fragment.acknowledge(FragmentOutcome::Failed(error.to_string().into()));
                return Err(error);
            }
        };
        input.skip_rest().await;
        let mut queue = self.take_unconfirmed();
        queue.push_back(Resend {
            fragment,
            published_before: false,
        });
        let mut attempt = 0;
        self.recover(queue, error, &mut attempt).await
    }

    /// Reconnects after `error` and sends `queue` again, in order, until it is all accepted.
    /// `attempt` counts reconnects across the whole recovery.
    async fn recover(
        &mut self,
        mut queue: VecDeque<Resend>,
        mut error: SinkError,
        attempt: &mut u32,
    ) -> Result<Recovery, PipelineError> {
        loop {
            self.stages.abort_fragment();
            if let Some(first) = queue.front() {
                self.stages.rewind(&first.fragment.info);
            }
            match self.reconnect(error, attempt).await {
                Ok(true) => {}
                Ok(false) => return Ok(Recovery::Interrupted),
                Err(fatal) => {
                    let message: Arc<str> = fatal.to_string().into();
                    for resend in queue {
                        self.stats.record_failed();
                        resend
                            .fragment
                            .acknowledge(FragmentOutcome::Failed(Arc::clone(&message)));
                    }
                    return Err(fatal);
                }
            }
            error = match self.resend(&mut queue).await? {
                None => return Ok(Recovery::Done),
                Some(next) => next,
            };
            // Whatever the new session accepted before failing is unconfirmed again.
            let mut retry = self.take_unconfirmed();
            retry.extend(queue.drain(..));
            queue = retry;
        }
    }

    /// Sends `queue` in order; returns the retryable error that stopped it, leaving the
    /// fragment it stopped at first in `queue`.
    async fn resend(
        &mut self,
        queue: &mut VecDeque<Resend>,
    ) -> Result<Option<SinkError>, PipelineError> {
        while let Some(mut resend) = queue.pop_front() {
            let fragment = &mut resend.fragment;
            if !fragment.body.is_rereadable() {
                let error = PipelineError::Sink(SinkError::fatal(format!(
                    "fragment {} came from a one-shot reader and cannot be sent again after the reconnect",
                    fragment.info.name
                )));
                resend
                    .fragment
                    .acknowledge(FragmentOutcome::Failed(error.to_string().into()));
                return Err(error);
            }
            let reader = match BodyReader::open(&mut fragment.body, &BufferPool::default()).await {
                Ok(reader) => reader,
                Err(error) => {
                    let message = format!(
                        "cannot read {} again after the reconnect: {error}",
                        fragment.body.describe()
                    );
                    self.fail(resend.fragment, message);
                    continue;
                }
            };
            let mut input = ChunkInput::Reread {
                reader,
                chunk_size: self.chunk_size,
            };
            match self.deliver(&resend.fragment.info, &mut input).await {
                Ok(FragmentResult::Delivered {
                    bytes,
                    transfer_time,
                }) => self.accepted(
                    resend.fragment,
                    bytes,
                    transfer_time,
                    resend.published_before,
                ),
                Ok(FragmentResult::InputFailed(message)) => self.fail(resend.fragment, message),
                Err(PipelineError::Sink(error)) if error.retryable => {
                    queue.push_front(resend);
                    return Ok(Some(error));
                }
                Err(error) => {
                    self.stats.record_failed();
                    resend
                        .fragment
                        .acknowledge(FragmentOutcome::Failed(error.to_string().into()));
                    return Err(error);
                }
            }
        }
        Ok(None)
    }

    /// Starts a new sink session after `error`, waiting per the sink's reconnect policy between
    /// attempts. Returns `false` if shutdown came first.
    async fn reconnect(
        &mut self,
        mut error: SinkError,
        attempt: &mut u32,
    ) -> Result<bool, PipelineError> {
        let policy = self.sink.reconnect_policy();
        loop {
            *attempt += 1;
            if !policy.allows(*attempt) {
                let tried = *attempt - 1;
                return Err(PipelineError::Sink(SinkError::fatal(if tried == 0 {
                    error.message
                } else {
                    format!(
                        "{} (gave up after {tried} reconnect attempts)",
                        error.message
                    )
                })));
            }
            let delay = policy.delay(*attempt);
            let of = match policy.max_attempts {
                0 => String::new(),
                max => format!(" of {max}"),
            };
            warn!(
                pipeline = %self.pipeline,
                "Sink failed: {error}; reconnecting in {} ms (attempt {attempt}{of})",
                delay.as_millis()
            );
            self.stats.record_reconnect();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return Ok(false),
            }
            let started = match self.sink.start_session(SessionReason::Reconnect).await {
                Ok(()) => self.replay_session_start().await,
                Err(error) => Err(error),
            };
            match started {
                Ok(()) => {
                    info!(pipeline = %self.pipeline, "Sink reconnected (attempt {attempt})");
                    return Ok(true);
                }
                Err(next) if next.retryable => error = next,
                Err(fatal) => return Err(PipelineError::Sink(fatal)),
            }
        }
    }

    /// Lets the stages emit what a new session needs first (an init segment).
    async fn replay_session_start(&mut self) -> Result<(), SinkError> {
        let mut items = Vec::new();
        self.stages
            .apply(StageCall::SessionStarted, &mut items)
            .map_err(|error| {
                SinkError::fatal(format!("a stage cannot start a new session: {error}"))
            })?;
        self.write(&mut items).await
    }

    /// Sends one fragment's chunks through the stages into the sink, once.
    async fn deliver(
        &mut self,
        info: &FragmentInfo,
        input: &mut ChunkInput<'_>,
    ) -> Result<FragmentResult, PipelineError> {
        let mut items = Vec::new();
        self.sink.begin_fragment(info).await?;
        let mut started = None;
        let stage_call = StageCall::Begin(info);
        if let Err(message) = self
            .run_stages(stage_call, &mut items, &mut started)
            .await?
        {
            return self.abort(input, message).await;
        }

        let (mut chunks, mut bytes) = (0u64, 0u64);
        loop {
            match input.next().await? {
                InputItem::Chunk(data, budget) => {
                    chunks += 1;
                    bytes += data.len() as u64;
                    match data {
                        ChunkData::Bytes(data) => {
                            let stage_call = StageCall::Chunk(data);
                            if let Err(message) = self
                                .run_stages(stage_call, &mut items, &mut started)
                                .await?
                            {
                                return self.abort(input, message).await;
                            }
                        }
                        // Only sent when there are no stages: straight to the sink.
                        ChunkData::File(range) => {
                            started.get_or_insert_with(Instant::now);
                            self.sink.write_file_range(range).await?;
                        }
                    }
                    drop(budget);
                    self.acknowledge_confirmed();
                    if chunks % PROGRESS_EVERY_CHUNKS == 0 {
                        debug!(
                            pipeline = %self.pipeline,
                            "Streamed {chunks} chunks ({} KB) for fragment {}",
                            bytes / 1024,
                            info.sequence
                        );
                    }
                }
                InputItem::End => {
                    let stage_call = StageCall::End;
                    if let Err(message) = self
                        .run_stages(stage_call, &mut items, &mut started)
                        .await?
                    {
                        return self.abort(input, message).await;
                    }
                    let transfer_time =
                        started.map(|started| started.elapsed()).unwrap_or_default();
                    self.sink.end_fragment().await?;
                    debug!(
                        pipeline = %self.pipeline,
                        "Completed streaming {chunks} chunks ({} KB) for fragment {}",
                        bytes / 1024,
                        info.sequence
                    );
                    return Ok(FragmentResult::Delivered {
                        bytes,
                        transfer_time,
                    });
                }
                InputItem::Failed(message) => return self.abort(input, message).await,
            }
        }
    }

    /// Gives up on the current fragment: skips the rest of its chunks and lets the stages and
    /// the sink undo what they can.
    async fn abort(
        &mut self,
        input: &mut ChunkInput<'_>,
        message: String,
    ) -> Result<FragmentResult, PipelineError> {
        input.skip_rest().await;
        self.stages.abort_fragment();
        self.sink.abort_fragment().await?;
        Ok(FragmentResult::InputFailed(message))
    }

    /// Runs the stages and writes what they produced (also what a failing stage emitted before
    /// its error), noting when the first chunk went to the sink. The inner error is the stage's.
    async fn run_stages(
        &mut self,
        call: StageCall<'_>,
        items: &mut Vec<StageItem>,
        started: &mut Option<Instant>,
    ) -> Result<Result<(), String>, SinkError> {
        let staged = self.stages.apply(call, items);
        if !items.is_empty() {
            started.get_or_insert_with(Instant::now);
        }
        self.write(items).await?;
        Ok(staged.map_err(|error| error.message))
    }

    async fn write(&mut self, items: &mut Vec<StageItem>) -> Result<(), SinkError> {
        for item in items.drain(..) {
            match item {
                StageItem::Chunk(chunk) => self.sink.write_chunk(chunk).await?,
                StageItem::NewSession => {
                    warn!(pipeline = %self.pipeline, "A stage requested a new sink session");
                    self.sink
                        .start_session(SessionReason::StreamChanged)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// Completes `timeout` after shutdown was requested; never before.
async fn shutdown_deadline(shutdown: &CancellationToken, timeout: Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(timeout).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::chunking::{ChunkSize, ChunkingStage};
    use crate::fragment::{FragmentBody, FragmentDelivery};
    use crate::reconnect::ReconnectPolicy;
    use crate::units::ByteSize;
    use bytes::Bytes;

    /// Records the bytes of each session; fails the writes listed in `fail_on` (counted over
    /// the sink's life) with a retryable error.
    struct FlakySink {
        sessions: Arc<Mutex<Vec<Vec<u8>>>>,
        writes: usize,
        fail_on: Vec<usize>,
        /// How many of the fragments ended in this session stay unconfirmed.
        confirmation_lag: usize,
        ended_in_session: usize,
    }

    fn flaky(
        sessions: &Arc<Mutex<Vec<Vec<u8>>>>,
        fail_on: Vec<usize>,
        confirmation_lag: usize,
    ) -> FlakySink {
        FlakySink {
            sessions: Arc::clone(sessions),
            writes: 0,
            fail_on,
            confirmation_lag,
            ended_in_session: 0,
        }
    }

    #[async_trait]
    impl Sink for FlakySink {
        async fn begin_fragment(&mut self, _: &FragmentInfo) -> Result<(), SinkError> {
            Ok(())
        }
        async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
            self.writes += 1;
            if self.fail_on.contains(&self.writes) {
                return Err(SinkError::retryable("connection reset"));
            }
            self.sessions
                .lock()
                .unwrap()
                .last_mut()
                .unwrap()
                .extend_from_slice(&chunk);
            Ok(())
        }
        async fn end_fragment(&mut self) -> Result<(), SinkError> {
            self.ended_in_session += 1;
            Ok(())
        }
        async fn start_session(&mut self, _: SessionReason) -> Result<(), SinkError> {
            self.sessions.lock().unwrap().push(Vec::new());
            self.ended_in_session = 0;
            Ok(())
        }
        fn unconfirmed(&mut self) -> usize {
            self.confirmation_lag.min(self.ended_in_session)
        }
        async fn close(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        fn reconnect_policy(&self) -> ReconnectPolicy {
            ReconnectPolicy {
                max_attempts: 3,
                initial_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            }
        }
    }

    /// Runs `bodies` through a driver over `sink`; returns the outcomes and the driver's result.
    async fn drive(
        sink: FlakySink,
        bodies: Vec<&'static [u8]>,
    ) -> (
        Vec<FragmentOutcome>,
        Result<(), PipelineError>,
        Arc<PipelineStats>,
    ) {
        let (fragment_tx, fragment_rx) = mpsc::channel(8);
        let (event_tx, event_rx) = mpsc::channel(8);
        tokio::spawn(
            ChunkingStage::new(ChunkSize::Fixed(ByteSize(4)), 64).run(fragment_rx, event_tx),
        );
        let mut deliveries: Vec<FragmentDelivery> = Vec::new();
        for (index, body) in bodies.into_iter().enumerate() {
            let info = FragmentInfo {
                sequence: index as u64 + 1,
                name: format!("f{index}"),
                length: None,
            };
            let (fragment, delivery) =
                Fragment::new(info, FragmentBody::Memory(Bytes::from_static(body)));
            fragment_tx.send(fragment).await.unwrap();
            deliveries.push(delivery);
        }
        drop(fragment_tx);
        let stats = Arc::new(PipelineStats::new("test"));
        let driver = SinkDriver {
            pipeline: "test".into(),
            sink: Box::new(sink),
            stages: StageChain::new(Vec::new()),
            stats: Arc::clone(&stats),
            chunk_size: 4,
            shutdown: CancellationToken::new(),
            shutdown_timeout: Duration::from_secs(5),
            unconfirmed: VecDeque::new(),
        };
        let result = driver.run(event_rx).await;
        let mut outcomes = Vec::new();
        for delivery in deliveries {
            outcomes.push(delivery.await);
        }
        (outcomes, result, stats)
    }

    #[tokio::test]
    async fn a_retryable_failure_resends_the_fragment_in_a_new_session() {
        let sessions = Arc::new(Mutex::new(vec![Vec::new()]));
        let sink = flaky(&sessions, vec![5], 0);
        let (outcomes, result, stats) = drive(sink, vec![b"0123456789ab", b"fragment-two"]).await;
        result.unwrap();
        assert_eq!(
            outcomes,
            [FragmentOutcome::Delivered, FragmentOutcome::Delivered]
        );
        assert_eq!(stats.sink_reconnects(), 1);
        let sessions = sessions.lock().unwrap();
        // The first fragment was whole in session 1, the failed write (chunk 2 of fragment 2)
        // made session 2, where fragment 2 starts over.
        assert_eq!(sessions[0], b"0123456789abfrag");
        assert_eq!(sessions[1], b"fragment-two");
    }

    #[tokio::test]
    async fn exhausted_reconnects_fail_the_pipeline_and_the_fragment() {
        let sessions = Arc::new(Mutex::new(vec![Vec::new()]));
        let sink = flaky(&sessions, (1..100).collect(), 0);
        let (outcomes, result, stats) = drive(sink, vec![b"0123", b"4567"]).await;
        let error = result.unwrap_err().to_string();
        assert!(
            error.contains("connection reset")
                && error.contains("gave up after 3 reconnect attempts"),
            "{error}"
        );
        assert!(matches!(outcomes[0], FragmentOutcome::Failed(_)));
        assert_eq!(outcomes[1], FragmentOutcome::Abandoned);
        assert_eq!(stats.sink_reconnects(), 3);
    }

    #[tokio::test]
    async fn unconfirmed_fragments_are_resent_with_the_one_in_flight() {
        let sessions = Arc::new(Mutex::new(vec![Vec::new()]));
        // One fragment of lag: when chunk 2 of "third" fails, "second" is not confirmed yet.
        let sink = flaky(&sessions, vec![6], 1);
        let (outcomes, result, stats) = drive(sink, vec![b"first", b"second", b"third"]).await;
        result.unwrap();
        assert_eq!(
            outcomes,
            [
                FragmentOutcome::Delivered,
                FragmentOutcome::Delivered,
                FragmentOutcome::Delivered
            ]
        );
        assert_eq!(
            stats.fragments_published(),
            3,
            "a resent fragment is not counted twice"
        );
        let sessions = sessions.lock().unwrap();
        assert_eq!(sessions[0], b"firstsecondthir");
        assert_eq!(sessions[1], b"secondthird");
    }
}
