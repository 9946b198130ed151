//! One RTMP session on its own task: connects, drives the protocol session (under TLS for
//! `rtmps://`), reads the socket the whole time (pings, acknowledgements, the server's
//! statuses), and sends the tags the sink hands over, under a bounded queue and a bounded
//! output buffer (backpressure).
//!
//! Confirmation: the server's acknowledgements, asked for every `ACKNOWLEDGEMENT_WINDOW`
//! bytes, and between them the server's answers to pings, sent every `PING_EVERY` while
//! anything sent is unconfirmed (a server answers in order, so an answer means it has read
//! everything before the ping). A server that has sent none by the time it should have (two windows and more) is
//! confirmed by the kernel instead: the bytes the peer's TCP has acknowledged (written minus
//! what is still in the socket's send queue, `SIOCOUTQ`). At a clean stop, after
//! `FCUnpublish` and `deleteStream`, what the peer's TCP has acknowledged is confirmed too:
//! the last window, which no acknowledgement will cover; then the socket is let go of
//! gracefully (`closing`).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use streampub_core::plugin::SinkError;
use streampub_flv::{FlvTag, TagKind};
use streampub_rtmp::acknowledgements::Counting;
use streampub_rtmp::command::ConnectRequest;
use streampub_rtmp::handshake::CLIENT_HANDSHAKE_BYTES;
use streampub_rtmp::publish::{Phase, ProtocolError, Step};
use streampub_rtmp::{PublishEvent, PublishRequest, PublishSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::closing::{close_gracefully, LINGER};
use super::enhanced::{check_enhanced_codecs, enhanced_codecs};
use super::progress::Progress;
use super::target::Target;
use super::tls::TlsSettings;
use super::transport::Transport;

/// The server is asked to acknowledge every this many bytes: a quarter second of a 2 Mbit/s
/// stream, so fragments are confirmed soon after they are sent, and what an outage repeats
/// beyond the GOP it resumes from (what the server took after its last acknowledgement) stays
/// small; four 12-byte acknowledgements a second cost nothing.
const ACKNOWLEDGEMENT_WINDOW: u32 = 64 * 1024;
/// The chunk size this client sends with, as FFmpeg and OBS do.
const CHUNK_SIZE: u32 = 4096;
/// Output buffered ahead of the socket before no more tags are taken.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Tags queued between the sink and the task.
const QUEUE: usize = 16;
/// How often the kernel's count is read while it confirms, and a closing session checked.
const TICK: Duration = Duration::from_millis(100);
/// How often a ping asks the server to confirm what is waiting for confirmation: what an
/// outage may find sent and unconfirmed is this much of the stream at most (and less than a
/// window), whatever its bitrate (64 KiB are 1.3 s of a 400 kbit/s stream).
const PING_EVERY: Duration = Duration::from_millis(250);
/// A server that takes no byte of pending output for this long has stalled.
const WRITE_STALL: Duration = Duration::from_secs(20);

/// What the sink hands the task.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Tag(FlvTag),
    /// The fragment whose tags came last ends here.
    FragmentEnd,
    /// Unpublish, send what is left, and end once the peer has it all.
    Close,
}

/// How a session connects.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSettings {
    pub pipeline: String,
    /// The destination's name in a fan-out.
    pub sink: Option<String>,
    pub target: Target,
    /// How TLS starts, for `rtmps://`.
    pub tls: Option<TlsSettings>,
    /// Connecting, the handshake and the start of the publication together.
    pub connect_timeout: Duration,
    /// Whether an earlier session of this sink was publishing (this one follows an outage).
    pub after_outage: bool,
}

/// A running session.
#[derive(Debug)]
pub(crate) struct Connection {
    pub outgoing: mpsc::Sender<Outgoing>,
    pub progress: Arc<Mutex<Progress>>,
    task: JoinHandle<()>,
}

impl Connection {
    /// Starts a session: it connects and publishes in the background; tags queue meanwhile.
    pub(crate) fn open(settings: &ConnectionSettings) -> Self {
        let (outgoing, queue) = mpsc::channel(QUEUE);
        let progress = Arc::new(Mutex::new(Progress::default()));
        let task = tokio::spawn(run(settings.clone(), queue, Arc::clone(&progress)));
        Self {
            outgoing,
            progress,
            task,
        }
    }

    /// Waits for the task to end (after `Outgoing::Close`), at most `timeout`.
    pub(crate) async fn finished(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, &mut self.task).await.is_ok()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    settings: ConnectionSettings,
    mut queue: mpsc::Receiver<Outgoing>,
    progress: Arc<Mutex<Progress>>,
) {
    if let Err(error) = publish(&settings, &mut queue, &progress).await {
        debug!(pipeline = %settings.pipeline,
                sink = settings.sink.as_deref(), error = %error, "RTMP session ended");
        progress.lock().unwrap().failure = Some(error);
    }
    // Only now may the sink see the queue closed: the failure is there to be read.
    drop(queue);
}

async fn publish(
    settings: &ConnectionSettings,
    queue: &mut mpsc::Receiver<Outgoing>,
    progress: &Mutex<Progress>,
) -> Result<(), SinkError> {
    let target = &settings.target;
    let mut leading = leading_tags(queue).await;
    let fourcc_list = enhanced_codecs(leading.iter().filter_map(|outgoing| match outgoing {
        Outgoing::Tag(tag) => Some(tag),
        _ => None,
    }));
    let address = format!("{}:{}", target.host, target.port);
    let socket = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(&address))
        .await
        .map_err(|_| SinkError::retryable(format!("connecting to {address} timed out")))?
        .map_err(|error| SinkError::retryable(format!("cannot connect to {address}: {error}")))?;
    socket.set_nodelay(true).ok();
    let descriptor = socket.as_raw_fd();
    let (mut reader, mut writer) = socket.into_split();
    let mut output = BytesMut::new();
    let mut transport = match &settings.tls {
        Some(tls) => Transport::tls(tls, &target.host, &mut output)?,
        None => Transport::Plain,
    };
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u32);
    let mut session = PublishSession::new(
        PublishRequest {
            connect: ConnectRequest {
                app: target.app.clone(),
                tc_url: target.tc_url.clone(),
                fourcc_list: fourcc_list.clone(),
            },
            stream_name: target.stream_name.clone(),
            chunk_size: CHUNK_SIZE,
            window_ack_size: ACKNOWLEDGEMENT_WINDOW,
        },
        epoch,
    );
    let mut written: u64 = 0;
    let mut buffer = vec![0; 16 * 1024];
    let mut closing = false;
    let mut kernel_confirms = false;
    let mut tick = tokio::time::interval(TICK);
    let connected_at = Instant::now();
    let (mut pings, mut last_ping) = (0u32, Instant::now());
    let mut last_write = Instant::now();
    loop {
        if session.phase() != Phase::Publishing
            && !closing
            && connected_at.elapsed() > settings.connect_timeout
        {
            if transport.tls_handshaking() {
                return Err(no_tls_handshake(settings, "within connect_timeout"));
            }
            return Err(SinkError::retryable(format!(
                "the RTMP server did not start the publication within connect_timeout ({} s)",
                settings.connect_timeout.as_secs()
            )));
        }
        if !output.is_empty() && last_write.elapsed() > WRITE_STALL {
            return Err(SinkError::retryable(format!(
                "the RTMP server took nothing for {} s",
                WRITE_STALL.as_secs()
            )));
        }
        take_output(&mut session, &mut transport, &mut output)?;
        // The kernel's count is read once for the events of a round, and only when there are
        // some: this loop runs for every tag.
        let mut delivered = None;
        while let Some(event) = session.next_event() {
            let delivered = *delivered
                .get_or_insert_with(|| kernel_acknowledged(&mut transport, descriptor, written));
            handle_event(
                event,
                settings,
                &fourcc_list,
                kernel_confirms,
                delivered,
                progress,
            )?;
        }
        if !kernel_confirms
            && acknowledgements_missing(&session, &mut transport, descriptor, written)
        {
            kernel_confirms = true;
            warn!(
                event = "acknowledgements_missing",
                pipeline = %settings.pipeline,
                sink = settings.sink.as_deref(),
                sent = session.sent(),
                "The RTMP server sends no acknowledgements; fragments are confirmed once the \
                 peer's TCP has acknowledged their bytes"
            );
        }
        if kernel_confirms || closing {
            let acknowledged = kernel_acknowledged(&mut transport, descriptor, written);
            progress
                .lock()
                .unwrap()
                .confirm(acknowledged.min(session.sent()));
        }
        if closing && output.is_empty() && unacknowledged_in_kernel(descriptor) == Some(0) {
            progress.lock().unwrap().confirm(session.sent());
            break;
        }
        let take_tags =
            session.phase() == Phase::Publishing && !closing && output.len() < OUTPUT_HIGH_WATER;
        tokio::select! {
            read = reader.read(&mut buffer) => match read {
                // After the unpublish, a server may close first: it had everything (under TLS
                // it may not wait for the close_notify).
                Ok(0) if closing && transport.rtmp_all_written(written, &output) => {
                    let acknowledged = kernel_acknowledged(&mut transport, descriptor, written);
                    progress.lock().unwrap().confirm(acknowledged.min(session.sent()));
                    break;
                }
                Ok(0) if transport.tls_handshaking() => {
                    return Err(no_tls_handshake(settings, "before closing the connection"))
                }
                // nginx-rtmp answers `connect` to an application it does not have so.
                Ok(0) if session.phase() == Phase::Connecting => {
                    return Err(SinkError::fatal(format!(
                        "the RTMP server closed the connection in answer to connect for \
                         application `{}` (nginx-rtmp does so for an application it does not \
                         have); check the application in `url` or `server_url`",
                        target.app
                    )))
                }
                Ok(0) => return Err(SinkError::retryable("the RTMP server closed the connection")),
                Ok(n) => {
                    let rtmp = transport.receive(&buffer[..n], &mut output)?;
                    session.feed(&rtmp).map_err(protocol_error)?;
                }
                Err(error) => return Err(SinkError::retryable(format!("reading from the RTMP server: {error}"))),
            },
            sent = writer.write(&output), if !output.is_empty() => {
                let n = sent.map_err(|error| SinkError::retryable(format!("writing to the RTMP server: {error}")))?;
                output.advance(n);
                written += n as u64;
                last_write = Instant::now();
            }
            next = next_outgoing(&mut leading, queue), if take_tags => match next {
                Some(Outgoing::Tag(tag)) => {
                    let (timestamp, frame) = (tag.timestamp, tag.is_frame());
                    let end = match tag.kind {
                        TagKind::Audio => session.send_audio(timestamp, tag.body),
                        TagKind::Video => session.send_video(timestamp, tag.body),
                        TagKind::Script => session.send_metadata(timestamp, &tag.body),
                    }
                    .map_err(protocol_error)?;
                    progress.lock().unwrap().tag_sent(end, timestamp, frame);
                }
                Some(Outgoing::FragmentEnd) => {
                    progress.lock().unwrap().fragment_ended(session.sent());
                }
                Some(Outgoing::Close) | None => {
                    session.unpublish().map_err(protocol_error)?;
                    take_output(&mut session, &mut transport, &mut output)?;
                    transport.close(&mut output)?;
                    closing = true;
                }
            },
            _ = tick.tick() => {
                // Between acknowledgement windows (a slow or quiet stream, filler), a ping
                // answered confirms what was sent before it.
                let waiting = progress.lock().unwrap().waits_for_confirmation();
                if waiting
                    && session.phase() == Phase::Publishing
                    && !closing
                    && !session.ping_outstanding()
                    && last_ping.elapsed() >= PING_EVERY
                {
                    pings += 1;
                    session.ping(pings).map_err(protocol_error)?;
                    last_ping = Instant::now();
                }
            }
        }
    }
    close_gracefully(reader, writer, LINGER).await;
    Ok(())
}

/// The tags a session begins with (metadata and sequence headers), up to and with its first
/// frame or the end of its first fragment: taken before connecting, so that `connect` can name
/// the enhanced-RTMP codecs the stream uses. The sink hands them over together.
async fn leading_tags(queue: &mut mpsc::Receiver<Outgoing>) -> VecDeque<Outgoing> {
    let mut leading = VecDeque::new();
    while let Some(outgoing) = queue.recv().await {
        let header = matches!(&outgoing, Outgoing::Tag(tag) if !tag.is_frame());
        leading.push_back(outgoing);
        if !header || leading.len() >= QUEUE {
            break;
        }
    }
    leading
}

/// The next thing to send: a leading tag held back, else the queue's next.
async fn next_outgoing(
    leading: &mut VecDeque<Outgoing>,
    queue: &mut mpsc::Receiver<Outgoing>,
) -> Option<Outgoing> {
    match leading.pop_front() {
        Some(outgoing) => Some(outgoing),
        None => queue.recv().await,
    }
}

/// A server that never completed a TLS handshake, `when`: a plain RTMP server on that port
/// waits for 1,537 bytes and never answers a ClientHello. Fatal on a sink's first session (a
/// wrong URL), retried after an outage (the network).
fn no_tls_handshake(settings: &ConnectionSettings, when: &str) -> SinkError {
    let message = format!(
        "the server did not complete a TLS handshake {when}; check that it serves RTMPS at \
         that port (a plain RTMP server needs rtmp://)"
    );
    match settings.after_outage {
        true => SinkError::retryable(message),
        false => SinkError::fatal(message),
    }
}

/// Moves what the protocol session has to send through the transport into `output`.
fn take_output(
    session: &mut PublishSession,
    transport: &mut Transport,
    output: &mut BytesMut,
) -> Result<(), SinkError> {
    transport.send(session.pending_output(), output)?;
    let produced = session.pending_output().len();
    session.consumed(produced);
    Ok(())
}

/// What a session event means for the sink; `codecs`: the enhanced-RTMP codecs `connect`
/// named.
fn handle_event(
    event: PublishEvent,
    settings: &ConnectionSettings,
    codecs: &[String],
    kernel_confirms: bool,
    delivered: u64,
    progress: &Mutex<Progress>,
) -> Result<(), SinkError> {
    match event {
        PublishEvent::Publishing { .. } => {
            progress.lock().unwrap().live_since = Some(Instant::now());
            info!(
                event = "rtmp_publishing",
                pipeline = %settings.pipeline,
                sink = settings.sink.as_deref(),
                server = %settings.target.tc_url,
                "Publishing to {}",
                settings.target.tc_url
            );
        }
        // Never more than the peer's TCP has acknowledged: a server's count that is misread
        // cannot confirm what never left this host.
        PublishEvent::Acknowledged(bytes) if !kernel_confirms => {
            progress.lock().unwrap().confirm(bytes.min(delivered));
        }
        // After an outage a server may still hold this publisher's old session for a while
        // and refuse the name: that is retried within the reconnect policy, not fatal.
        PublishEvent::Refused { step, status }
            if settings.after_outage && status.code == "NetStream.Publish.BadName" =>
        {
            return Err(SinkError::retryable(refusal(settings, step, &status)));
        }
        PublishEvent::Refused { step, status } => {
            return Err(SinkError::fatal(refusal(settings, step, &status)));
        }
        PublishEvent::ReconnectRequested(status) => {
            return Err(SinkError::retryable(format!(
                "the RTMP server asked to reconnect ({})",
                status.description
            )));
        }
        PublishEvent::Status(status) => {
            debug!(pipeline = %settings.pipeline,
                sink = settings.sink.as_deref(), code = %status.code, "RTMP status: {}", status.description);
        }
        PublishEvent::PingAnswered(bytes) => {
            progress.lock().unwrap().confirm(bytes.min(delivered));
        }
        PublishEvent::Connected { properties, .. } => {
            check_enhanced_codecs(&settings.pipeline, codecs, &properties)?;
        }
        PublishEvent::Acknowledged(_) => {}
    }
    Ok(())
}

/// The server's refusal in its own words, and what to fix; the stream key never appears.
fn refusal(
    settings: &ConnectionSettings,
    step: Step,
    status: &streampub_rtmp::command::Status,
) -> String {
    let key = &settings.target.stream_name;
    let description = status.description.replace(key.as_str(), "***");
    let fix = match step {
        Step::Connect => format!(
            "check the application (`{}`) in `url` or `server_url`",
            settings.target.app
        ),
        Step::CreateStream => "check the server's configuration for publishing".to_owned(),
        Step::Publish => "check the stream key in `url` or `stream_name`; \
             NetStream.Publish.BadName also means another publisher holds it"
            .to_owned(),
    };
    format!(
        "the RTMP server refused {}: {} ({}); {fix}",
        step.name(),
        status.code,
        description
    )
}

fn protocol_error(error: ProtocolError) -> SinkError {
    match error {
        ProtocolError::Handshake(error) => SinkError::fatal(error.to_string()),
        other => SinkError::retryable(format!("RTMP: {other}")),
    }
}

/// Whether the server should have acknowledged by now and has not: its TCP has taken two
/// windows and more. The kernel is asked only once that much has been sent at all.
fn acknowledgements_missing(
    session: &PublishSession,
    transport: &mut Transport,
    descriptor: RawFd,
    written: u64,
) -> bool {
    let due = 2 * u64::from(ACKNOWLEDGEMENT_WINDOW) + 64 * 1024;
    session.counting() == Counting::Unknown
        && session.sent() > due
        && kernel_acknowledged(transport, descriptor, written) > due
}

/// RTMP bytes after the handshake that the peer's TCP has acknowledged, of `written` socket
/// bytes in all (under TLS, the RTMP bytes whose records it has acknowledged).
fn kernel_acknowledged(transport: &mut Transport, descriptor: RawFd, written: u64) -> u64 {
    let Some(unacknowledged) = unacknowledged_in_kernel(descriptor) else {
        return 0;
    };
    transport
        .rtmp_delivered(written.saturating_sub(unacknowledged))
        .saturating_sub(CLIENT_HANDSHAKE_BYTES)
}

/// Bytes in the socket's send queue that the peer has not acknowledged (`SIOCOUTQ`).
fn unacknowledged_in_kernel(descriptor: RawFd) -> Option<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: `descriptor` is the session's open TCP socket for as long as this task runs, and
    // TIOCOUTQ (SIOCOUTQ) writes one int.
    let result = unsafe { libc::ioctl(descriptor, libc::TIOCOUTQ, &mut queued) };
    (result == 0).then_some(queued.max(0) as u64)
}
