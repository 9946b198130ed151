//! The driver with a sink that fails and confirms late: what is resent, counted, acknowledged.

use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::chunk::ChunkSize;
use crate::fragment::{FragmentBody, FragmentDelivery, FragmentInfo};
use crate::reconnect::ReconnectPolicy;
use crate::runtime::chunking::ChunkingStage;
use crate::sink::SessionReason;
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
    /// How long each write takes.
    write_delay: Duration,
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
        write_delay: Duration::ZERO,
    }
}

#[async_trait]
impl Sink for FlakySink {
    async fn begin_fragment(&mut self, _: &FragmentInfo) -> Result<(), SinkError> {
        Ok(())
    }
    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.writes += 1;
        tokio::time::sleep(self.write_delay).await;
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
            max_attempts: Some(3),
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
    tokio::spawn(ChunkingStage::new(ChunkSize::Fixed(ByteSize(4)), 64).run(fragment_rx, event_tx));
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
        confirmations: Confirmations::new("test", Arc::clone(&stats), None),
        outages: Outages::new(0),
        pacer: None,
        filler: Default::default(),
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
        error.contains("connection reset") && error.contains("gave up after 3 reconnect attempts"),
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

#[tokio::test]
async fn attempts_count_per_outage_and_a_session_that_stayed_up_ends_one() {
    let sessions = Arc::new(Mutex::new(vec![Vec::new()]));
    // Nothing is confirmed before each failure (two fragments of lag), but every session stays
    // up longer than max_delay (20 ms): four failures in a row are four outages of one attempt,
    // not one outage of four attempts (the policy allows three).
    let mut sink = flaky(&sessions, vec![3, 6, 9, 12], 2);
    sink.write_delay = Duration::from_millis(25);
    let bodies: Vec<&'static [u8]> = vec![b"aaaa", b"bbbb", b"cccc", b"dddd", b"eeee"];
    let (outcomes, result, stats) = drive(sink, bodies).await;
    result.unwrap();
    assert!(outcomes
        .iter()
        .all(|outcome| *outcome == FragmentOutcome::Delivered));
    assert_eq!(stats.sink_reconnects(), 4);
}
