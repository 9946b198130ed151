//! The RTMP protocol core (`streampub-rtmp`) against real servers: nginx-rtmp and ffmpeg's own
//! listener decode what it sends in a session that starts past 2^24 ms (4 h 40 min into a
//! stream, where every message that opens a chunk stream carries an extended timestamp, and
//! so does each of its continuation chunks); nginx-rtmp acknowledges it and refuses a stream
//! that is already being published, in its own words.
//! The driver here is a plain blocking loop, enough to exercise the session.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streampub_rtmp::command::{ConnectRequest, Status};
use streampub_rtmp::publish::{Phase, Step};
use streampub_rtmp::{PublishEvent, PublishRequest, PublishSession};
use streampub_tests::media::{probe_packets, small_fragments, Packets};
use streampub_tests::rtmp::{free_port, RtmpServer};
use streampub_tests::TestDir;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Past 2^24 ms (4 h 40 min): a session that begins there opens each chunk stream with an
/// extended timestamp.
const PAST_EXTENDED: u32 = 0x0100_0000 + 1_000;
/// RTMP's initial chunk size, kept: metadata and frames then span many continuation chunks.
const SMALL_CHUNKS: u32 = 128;

/// One FLV tag of a file: its type (8 audio, 9 video, 18 script), time and body.
struct Tag {
    type_id: u8,
    timestamp: u32,
    body: Vec<u8>,
}

/// The tags of an FLV file.
fn flv_tags(path: &Path) -> Vec<Tag> {
    let bytes = std::fs::read(path).unwrap();
    let data_offset = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
    let mut at = data_offset + 4;
    let mut tags = Vec::new();
    while at + 11 <= bytes.len() {
        let header = &bytes[at..at + 11];
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let timestamp = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let body = bytes[at + 11..at + 11 + size].to_vec();
        tags.push(Tag {
            type_id: header[0] & 0x1F,
            timestamp,
            body,
        });
        at += 11 + size + 4;
    }
    tags
}

/// A publishing session over a blocking socket.
pub(crate) struct Publisher {
    socket: TcpStream,
    request: PublishRequest,
    session: PublishSession,
    events: Vec<PublishEvent>,
}

impl Publisher {
    pub(crate) fn connect(port: u16, app: &str, stream_name: &str, window_ack_size: u32) -> Self {
        let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        Self::over(socket, port, app, stream_name, window_ack_size)
    }

    /// Sends with RTMP's initial chunk size instead of 4096.
    fn with_small_chunks(mut self) -> Self {
        let mut request = self.request.clone();
        request.chunk_size = SMALL_CHUNKS;
        self.session = PublishSession::new(request, 0);
        self
    }

    fn over(
        socket: TcpStream,
        port: u16,
        app: &str,
        stream_name: &str,
        window_ack_size: u32,
    ) -> Self {
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let request = PublishRequest {
            connect: ConnectRequest {
                app: app.to_owned(),
                tc_url: format!("rtmp://127.0.0.1:{port}/{app}"),
                fourcc_list: Vec::new(),
            },
            stream_name: stream_name.to_owned(),
            chunk_size: 4096,
            window_ack_size,
        };
        Self {
            socket,
            session: PublishSession::new(request.clone(), 0),
            request,
            events: Vec::new(),
        }
    }

    /// Writes what the session has to send, then takes what the server sent.
    fn pump(&mut self) {
        let pending = self.session.pending_output().len();
        if pending > 0 {
            self.socket
                .write_all(self.session.pending_output())
                .unwrap();
            self.session.consumed(pending);
        }
        let mut buffer = [0; 16 * 1024];
        match self.socket.read(&mut buffer) {
            Ok(0) => {}
            Ok(n) => self.session.feed(&buffer[..n]).unwrap(),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => panic!("reading from the server: {error}"),
        }
        while let Some(event) = self.session.next_event() {
            self.events.push(event);
        }
    }

    /// Pumps until an event matches `wanted`.
    pub(crate) fn wait_for(&mut self, wanted: impl Fn(&PublishEvent) -> bool) -> PublishEvent {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(event) = self.events.iter().find(|event| wanted(event)) {
                return event.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no such event; got {:?}",
                self.events
            );
            self.pump();
        }
    }

    /// Publishes `tags` with `offset` added to their times.
    fn publish(&mut self, tags: &[Tag], offset: u32) {
        self.wait_for(|event| matches!(event, PublishEvent::Publishing { .. }));
        for tag in tags {
            let timestamp = tag.timestamp.wrapping_add(offset);
            let body = Bytes::from(tag.body.clone());
            match tag.type_id {
                8 => self.session.send_audio(timestamp, body),
                9 => self.session.send_video(timestamp, body),
                _ => self.session.send_metadata(timestamp, &tag.body),
            }
            .unwrap();
            self.pump();
        }
        for _ in 0..20 {
            self.pump();
        }
    }

    /// Unpublishes cleanly and closes the connection.
    pub(crate) fn finish(mut self) {
        self.session.unpublish().unwrap();
        self.pump();
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

fn four_seconds_of_flv() -> PathBuf {
    small_fragments(1, 4, &["--format", "flv"]).remove(0)
}

/// The recording holds every tag, on a clock without a jump.
fn assert_recorded_whole(recording: &Path, input: &Packets) {
    let recorded = probe_packets(recording);
    assert_eq!(recorded.video.count(), input.video.count(), "video packets");
    assert_eq!(recorded.audio.count(), input.audio.count(), "audio packets");
    assert!(recorded.video.monotonic(true), "video DTS always forward");
    let longest_gap = recorded
        .video
        .dts
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f64::max);
    assert!(longest_gap < 0.05, "a gap of {longest_gap} s in the video");
    assert!(
        (recorded.video.span() - input.video.span()).abs() < 0.05,
        "span {} vs {}",
        recorded.video.span(),
        input.video.span()
    );
}

#[test]
fn nginx_rtmp_records_every_tag_of_a_session_past_2_to_the_24_ms_and_acknowledges_them() {
    let mut server = RtmpServer::start();
    let input = four_seconds_of_flv();
    let tags = flv_tags(&input);
    // A small window, so that a few seconds of media bring acknowledgements.
    let mut publisher =
        Publisher::connect(server.port(), "live", "boundary", 64 * 1024).with_small_chunks();
    publisher.publish(&tags, PAST_EXTENDED);
    let sent = publisher.session.sent();
    let acknowledged = publisher.session.acknowledged();
    assert!(acknowledged > 0, "nginx-rtmp acknowledged nothing");
    assert!(acknowledged <= sent);
    // nginx-rtmp acknowledges every window of 64 KiB; the handshake is taken off its total.
    assert!(
        sent - acknowledged <= 64 * 1024 + 3073 + 16 * 1024,
        "{acknowledged} of {sent}"
    );
    assert_eq!(publisher.session.counting().name(), "running total");
    publisher.finish();
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1);
    assert_recorded_whole(&recordings[0], &probe_packets(&input));
}

#[test]
fn ffmpegs_own_listener_decodes_the_same_stream() {
    let dir = TestDir::new();
    let port = free_port();
    let output = dir.join("received.flv");
    let mut listener = ffmpeg_listener(port, &output);
    let input = four_seconds_of_flv();
    let tags = flv_tags(&input);
    // ffmpeg takes one client: the first connection that gets through is the publisher.
    let deadline = Instant::now() + TIMEOUT;
    let socket = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(socket) => break socket,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("ffmpeg never listened: {error}"),
        }
    };
    let mut publisher = Publisher::over(socket, port, "live", "key", 2_500_000).with_small_chunks();
    publisher.publish(&tags, PAST_EXTENDED);
    publisher.finish();
    let status = wait_with_timeout(&mut listener.0, TIMEOUT);
    assert!(status.success(), "ffmpeg's listener failed: {status}");
    assert_recorded_whole(&output, &probe_packets(&input));
}

#[test]
fn a_stream_already_being_published_is_refused_in_the_servers_words() {
    let server = RtmpServer::start();
    let mut first = Publisher::connect(server.port(), "live", "taken", 2_500_000);
    first.wait_for(|event| matches!(event, PublishEvent::Publishing { .. }));
    let mut second = Publisher::connect(server.port(), "live", "taken", 2_500_000);
    let refusal = second.wait_for(|event| matches!(event, PublishEvent::Refused { .. }));
    let PublishEvent::Refused {
        step,
        status: Status { level, code, .. },
    } = refusal
    else {
        unreachable!()
    };
    assert_eq!(step, Step::Publish);
    assert_eq!(level, "error");
    assert_eq!(code, "NetStream.Publish.BadName");
    assert_eq!(second.session.phase(), Phase::Ended);
    first.finish();
}

/// ffmpeg's own RTMP server for one publisher of `rtmp://127.0.0.1:<port>/live/key`, copying
/// what it receives into the FLV file `output`.
pub(crate) fn ffmpeg_listener(port: u16, output: &std::path::Path) -> KillOnDrop {
    KillOnDrop(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-listen", "1", "-i"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/key"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(output)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A child process killed when the test ends, whichever way.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
