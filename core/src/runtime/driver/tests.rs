//! The driver with a sink that fails and confirms late: what is resent, counted, acknowledged.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::*;
use crate::chunk::ChunkSize;
use crate::fragment::{FragmentBody, FragmentDelivery, FragmentInfo};
use crate::reconnect::ReconnectPolicy;
use crate::runtime::chunking::ChunkingStage;
use crate::runtime::stages::StageChain;
use crate::runtime::stats::PipelineStats;
use crate::sink::{SessionReason, Sink, SinkCapabilities};
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
    /// One byte is a second of media; all but the last two seconds received are confirmed.
    fn confirmed_output_time(&mut self) -> Option<Duration> {
        let received = self.sessions.lock().unwrap().last().map_or(0, Vec::len);
        Some(Duration::from_secs(received.saturating_sub(2) as u64))
    }
    async fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            reconnect: ReconnectPolicy {
                max_attempts: Some(3),
                initial_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
            ..SinkCapabilities::default()
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
    drive_through(sink, Vec::new(), bodies).await
}

/// Runs `bodies` through `stages` and a driver over `sink`.
async fn drive_through(
    sink: FlakySink,
    stages: Vec<Box<dyn crate::plugin::Stage>>,
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
        stages: StageChain::new(stages),
        stats: Arc::clone(&stats),
        chunk_size: 4,
        shutdown: CancellationToken::new(),
        shutdown_timeout: Duration::from_secs(5),
        confirmations: Confirmations::new("test", Arc::clone(&stats), None),
        outages: Outages::new(0),
        pacer: None,
        filler: Default::default(),
        clock: Default::default(),
        signal: None,
    };
    let result = driver.run(Events::Channel(event_rx)).await;
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

/// Each byte is a frame of one second, upper case a keyframe; resumes a fragment at its last
/// keyframe at or before the offset it is given.
#[derive(Default)]
struct SecondFrames {
    /// The next frame's time, in seconds.
    next: u64,
    /// Each fragment's first frame time, to rewind to.
    starts: Vec<(u64, u64)>,
    /// The current fragment's start.
    start: u64,
    /// While resuming: the offset, and the frames held since the last keyframe before it.
    resume: Option<(u64, Vec<u8>)>,
}

impl crate::plugin::Stage for SecondFrames {
    fn begin_fragment(
        &mut self,
        fragment: &FragmentInfo,
        _: &mut crate::plugin::StageOutput,
    ) -> Result<(), crate::plugin::StageError> {
        self.start = self.next;
        self.starts.push((fragment.sequence, self.next));
        Ok(())
    }
    fn process_chunk(
        &mut self,
        chunk: Bytes,
        output: &mut crate::plugin::StageOutput,
    ) -> Result<(), crate::plugin::StageError> {
        for &frame in chunk.iter() {
            let time = self.next;
            self.next += 1;
            if let Some((offset, held)) = &mut self.resume {
                if time - self.start <= *offset {
                    if frame.is_ascii_uppercase() {
                        held.clear();
                    }
                    if frame.is_ascii_uppercase() || !held.is_empty() {
                        held.push(frame);
                    }
                    continue;
                }
                let (_, held) = self.resume.take().unwrap();
                let first = time - held.len() as u64;
                for (index, held) in held.into_iter().enumerate() {
                    output.mark_media_time(Duration::from_secs(first + index as u64));
                    output.push_chunk(Bytes::from(vec![held]));
                }
            }
            output.mark_media_time(Duration::from_secs(time));
            output.push_chunk(Bytes::from(vec![frame]));
        }
        Ok(())
    }
    fn end_fragment(
        &mut self,
        output: &mut crate::plugin::StageOutput,
    ) -> Result<(), crate::plugin::StageError> {
        output.mark_media_span(crate::plugin::MediaSpan {
            start: Duration::from_secs(self.start),
            end: Duration::from_secs(self.next),
        });
        Ok(())
    }
    fn resume_fragment(&mut self, offset: Duration) {
        self.resume = Some((offset.as_secs(), Vec::new()));
    }
    fn rewind(&mut self, fragment: &FragmentInfo) {
        if let Some(&(_, start)) = self
            .starts
            .iter()
            .find(|(sequence, _)| *sequence == fragment.sequence)
        {
            self.next = start;
        }
    }
}

#[tokio::test]
async fn a_fragment_cut_short_is_resumed_at_its_last_keyframe_before_the_confirmed_point() {
    let sessions = Arc::new(Mutex::new(vec![Vec::new()]));
    let sink = flaky(&sessions, vec![16, 23], 0);
    let stages: Vec<Box<dyn crate::plugin::Stage>> = vec![Box::new(SecondFrames::default())];
    let (outcomes, result, stats) =
        drive_through(sink, stages, vec![b"AbcDefGhij", b"KlmNopQrst"]).await;
    result.unwrap();
    assert_eq!(
        outcomes,
        [FragmentOutcome::Delivered, FragmentOutcome::Delivered]
    );
    assert_eq!(stats.sink_reconnects(), 2);
    let sessions = sessions.lock().unwrap();
    // Write 16 fails: 15 s received, 13 s confirmed, 3 s into the second fragment, whose
    // last keyframe by then is "N" (3 s).
    assert_eq!(sessions[0], b"AbcDefGhijKlmNo");
    // Write 23 fails: 6 s received from "N", 4 s confirmed: 7 s into the fragment; "Q" (6 s).
    assert_eq!(sessions[1], b"NopQrs");
    assert_eq!(sessions[2], b"Qrst");
}
