//! The session against a scripted server built from this crate's own codec: the sequence a
//! publisher sends, refusals in the server's words, pings and acknowledgements.

use proptest::prelude::*;

use super::*;
use crate::command::ConnectRequest;

fn request() -> PublishRequest {
    PublishRequest {
        connect: ConnectRequest {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
            fourcc_list: Vec::new(),
        },
        stream_name: "key".into(),
        chunk_size: 4096,
        window_ack_size: 2_500_000,
    }
}

/// A server that reads what the client sends and answers as told.
struct Server {
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    handshaken: bool,
    received: Vec<Message>,
}

impl Server {
    fn new() -> Self {
        Self {
            decoder: ChunkDecoder::new(crate::chunk::MAX_MESSAGE_LEN),
            encoder: ChunkEncoder::default(),
            handshaken: false,
            received: Vec::new(),
        }
    }

    /// Takes the client's output; answers the handshake.
    fn take(&mut self, client: &mut PublishSession) {
        let bytes = client.pending_output().to_vec();
        client.consumed(bytes.len());
        let mut bytes = &bytes[..];
        if !self.handshaken {
            // C0+C1 first: answer S0+S1+S2 at once.
            assert_eq!(bytes.len(), 1537);
            self.handshaken = true;
            let mut answer = vec![3];
            answer.extend_from_slice(&[0; 1536]);
            answer.extend_from_slice(&bytes[1..]);
            client.feed(&answer).unwrap();
            return self.take(client);
        }
        if bytes.len() >= 1536 && self.received.is_empty() {
            bytes = &bytes[1536..]; // C2
        }
        self.decoder.feed(bytes);
        while let Some(message) = self.decoder.next_message().unwrap() {
            if let Some(Control::SetChunkSize(size)) = Control::read(&message).unwrap() {
                self.decoder.set_chunk_size(size).unwrap();
            }
            self.received.push(message);
        }
    }

    fn send(&mut self, client: &mut PublishSession, message: Message) {
        let mut out = BytesMut::new();
        self.encoder.encode(3, &message, &mut out).unwrap();
        client.feed(&out).unwrap();
    }

    fn commands(&self) -> Vec<String> {
        self.received
            .iter()
            .filter(|message| message.type_id == COMMAND)
            .map(|message| {
                Value::read_all(&message.payload).unwrap()[0]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

fn answer(name: &str, transaction: f64, arguments: &[Value]) -> Message {
    command::command(name, transaction, Value::Null, arguments)
}

fn status(level: &str, code: &str, description: &str) -> Value {
    Value::object([
        ("level", Value::string(level)),
        ("code", Value::string(code)),
        ("description", Value::string(description)),
    ])
}

/// Runs a session up to `NetStream.Publish.Start`.
fn publishing() -> (PublishSession, Server) {
    let mut client = PublishSession::new(request(), 0);
    let mut server = Server::new();
    server.take(&mut client);
    assert_eq!(client.phase(), Phase::Connecting);
    server.send(&mut client, Control::WindowAckSize(5_000_000).message());
    let success = status("status", "NetConnection.Connect.Success", "ok");
    server.send(&mut client, answer("_result", CONNECT, &[success]));
    server.take(&mut client);
    server.send(
        &mut client,
        answer("_result", CREATE_STREAM, &[Value::Number(7.0)]),
    );
    server.take(&mut client);
    let start = status("status", "NetStream.Publish.Start", "Start publishing");
    server.send(&mut client, answer("onStatus", 0.0, &[start]));
    (client, server)
}

#[test]
fn a_publisher_sends_the_sequence_ffmpeg_and_obs_send() {
    let (mut client, server) = publishing();
    assert_eq!(
        server.commands(),
        [
            "connect",
            "releaseStream",
            "FCPublish",
            "createStream",
            "publish"
        ]
    );
    // Its window, so that the server acknowledges; the chunk size first of all.
    assert_eq!(
        Control::read(&server.received[0]).unwrap(),
        Some(Control::SetChunkSize(4096))
    );
    assert!(server
        .received
        .iter()
        .any(|message| Control::read(message).unwrap() == Some(Control::WindowAckSize(2_500_000))));
    let publish = server.received.last().unwrap();
    assert_eq!(
        publish.stream_id, 7,
        "publish goes to the stream createStream gave"
    );
    let mut events = Vec::new();
    while let Some(event) = client.next_event() {
        events.push(event);
    }
    assert!(matches!(events[0], PublishEvent::Connected { .. }));
    assert_eq!(events[1], PublishEvent::Publishing { stream_id: 7 });
}

#[test]
fn media_goes_to_the_stream_and_acknowledgements_move_the_confirmed_offset() {
    let (mut client, mut server) = publishing();
    let start = client.sent();
    let end = client
        .send_video(40, Bytes::from(vec![0x17; 10_000]))
        .unwrap();
    assert!(end > start + 10_000);
    server.take(&mut client);
    let video = server.received.last().unwrap();
    assert_eq!(
        (video.type_id, video.stream_id, video.timestamp),
        (9, 7, 40)
    );
    assert_eq!(video.payload.len(), 10_000);
    while client.next_event().is_some() {}
    // The server counts the handshake (as SRS does): its total is what it has received.
    let total = crate::handshake::CLIENT_HANDSHAKE_BYTES + end;
    server.send(
        &mut client,
        Control::Acknowledgement(total as u32).message(),
    );
    assert_eq!(client.next_event(), Some(PublishEvent::Acknowledged(end)));
    assert_eq!(client.acknowledged(), end);
}

#[test]
fn a_wrong_stream_key_is_refused_in_the_servers_words() {
    let mut client = PublishSession::new(request(), 0);
    let mut server = Server::new();
    server.take(&mut client);
    let success = status("status", "NetConnection.Connect.Success", "ok");
    server.send(&mut client, answer("_result", CONNECT, &[success]));
    server.take(&mut client);
    server.send(
        &mut client,
        answer("_result", CREATE_STREAM, &[Value::Number(1.0)]),
    );
    let bad_name = status("error", "NetStream.Publish.BadName", "Already publishing");
    server.send(&mut client, answer("onStatus", 0.0, &[bad_name]));
    let refusal = std::iter::from_fn(|| client.next_event())
        .find(|event| matches!(event, PublishEvent::Refused { .. }))
        .unwrap();
    let PublishEvent::Refused { step, status } = refusal else {
        unreachable!()
    };
    assert_eq!(step, Step::Publish);
    assert_eq!(status.code, "NetStream.Publish.BadName");
    assert_eq!(status.description, "Already publishing");
    assert_eq!(client.phase(), Phase::Ended);
    assert_eq!(
        client.send_video(0, Bytes::new()),
        Err(ProtocolError::NotPublishing(Phase::Ended))
    );
}

#[test]
fn a_refused_connect_is_told_as_such() {
    let mut client = PublishSession::new(request(), 0);
    let mut server = Server::new();
    server.take(&mut client);
    let rejected = status(
        "error",
        "NetConnection.Connect.Rejected",
        "no such application",
    );
    server.send(&mut client, answer("_error", CONNECT, &[rejected]));
    assert!(matches!(
        client.next_event(),
        Some(PublishEvent::Refused {
            step: Step::Connect,
            ..
        })
    ));
}

#[test]
fn pings_are_answered_and_the_servers_window_is_acknowledged_with_the_running_total() {
    let (mut client, mut server) = publishing();
    server.take(&mut client);
    let before = server.received.len();
    server.send(&mut client, Control::PingRequest(1234).message());
    server.take(&mut client);
    assert_eq!(
        Control::read(&server.received[before]).unwrap(),
        Some(Control::PingResponse(1234))
    );
    // A window of 100 bytes: the bytes that cross it bring an acknowledgement of the running
    // total, never of the count since the last one.
    server.send(&mut client, Control::WindowAckSize(100).message());
    let first_total = client.received;
    let filler = answer("onBWDone", 0.0, &[Value::string("x".repeat(200))]);
    server.send(&mut client, filler);
    let second_total = client.received;
    server.take(&mut client);
    let acknowledgements: Vec<u32> = server
        .received
        .iter()
        .filter_map(|message| match Control::read(message).unwrap() {
            Some(Control::Acknowledgement(value)) => Some(value),
            _ => None,
        })
        .collect();
    assert_eq!(acknowledgements, [first_total as u32, second_total as u32]);
}

#[test]
fn an_answered_ping_confirms_every_byte_sent_before_it() {
    let (mut client, mut server) = publishing();
    while client.next_event().is_some() {}
    client.send_video(0, Bytes::from(vec![0x17; 500])).unwrap();
    let before = client.sent();
    client.ping(42).unwrap();
    assert!(client.ping_outstanding());
    server.take(&mut client);
    server.send(&mut client, Control::PingResponse(42).message());
    assert_eq!(
        client.next_event(),
        Some(PublishEvent::PingAnswered(before))
    );
    assert!(!client.ping_outstanding());
}

proptest! {
    #[test]
    fn any_bytes_from_the_server_are_taken_or_refused_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let (mut client, _) = publishing();
        let _ = client.feed(&bytes);
    }
}
