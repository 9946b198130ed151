//! The publishing client as a state machine without I/O: bytes from the server go in
//! ([`PublishSession::feed`]), bytes to write come out ([`PublishSession::pending_output`]),
//! and what happened is told as [`PublishEvent`]s. The driver owns the socket and the clock.
//!
//! The sequence, as FFmpeg and OBS send it: handshake; Set Chunk Size and `connect`; once it
//! is accepted, Window Acknowledgement Size (nginx-rtmp and SRS acknowledge only a client that
//! sent one), `releaseStream`, `FCPublish` and `createStream`; then `publish` on the stream it
//! returned; media once `NetStream.Publish.Start` comes. Pings are answered and the server's
//! chunk size followed for the whole session. A refusal (`_error` to `connect` or
//! `createStream`, an `onStatus` of level `error`) is an event with the server's own words,
//! never retried here.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::acknowledgements::{Acknowledgements, Counting};
use crate::amf0::{self, Amf0Error, Value};
use crate::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, Message};
use crate::command::{self, ConnectRequest, ServerCommand, Status, COMMAND, DATA};
use crate::control::{Control, ControlError, CONTROL_CHUNK_STREAM};
use crate::handshake::{ClientHandshake, HandshakeError};

/// The largest message taken from a server: commands and control messages are small.
const MAX_INCOMING_MESSAGE: usize = 1 << 20;

const COMMAND_CHUNK_STREAM: u32 = 3;
const AUDIO_CHUNK_STREAM: u32 = 4;
const DATA_CHUNK_STREAM: u32 = 5;
const VIDEO_CHUNK_STREAM: u32 = 6;

const CONNECT: f64 = 1.0;
const RELEASE_STREAM: f64 = 2.0;
const FC_PUBLISH: f64 = 3.0;
const CREATE_STREAM: f64 = 4.0;
const PUBLISH: f64 = 5.0;

/// Audio and video message types.
const AUDIO: u8 = 8;
const VIDEO: u8 = 9;

/// What to publish, and how.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub connect: ConnectRequest,
    pub stream_name: String,
    /// The chunk size this client sends with (4096 is what FFmpeg and OBS use).
    pub chunk_size: u32,
    /// The window after which the server is asked to acknowledge.
    pub window_ack_size: u32,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    Connecting,
    CreatingStream,
    StartingPublish,
    Publishing,
    /// Refused, or unpublished: nothing more is sent.
    Ended,
}

/// The step a refusal came at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connect,
    CreateStream,
    Publish,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::CreateStream => "createStream",
            Self::Publish => "publish",
        }
    }
}

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishEvent {
    /// `connect` was accepted; the server's answer: its properties (version, capabilities,
    /// and on an enhanced-RTMP server its `fourCcList` or FourCC info maps) and information.
    Connected {
        properties: Value,
        information: Value,
    },
    /// `NetStream.Publish.Start`: media may be sent.
    Publishing { stream_id: u32 },
    /// The server refused at `step`, in its own words. The session has ended.
    Refused { step: Step, status: Status },
    /// The server asks the client to connect again (enhanced RTMP), perhaps elsewhere.
    ReconnectRequested(Status),
    /// Another status the server told (`NetStream.Unpublish.Success`, warnings).
    Status(Status),
    /// The server's acknowledgements now cover this many bytes sent after the handshake.
    Acknowledged(u64),
    /// The server answered a ping sent after this many bytes: it has read them all (it reads
    /// the stream in order).
    PingAnswered(u64),
}

/// Why the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("the server sent a command that is not AMF0: {0}")]
    Command(#[from] Amf0Error),
    #[error("media was given while the session is {0:?}, not publishing")]
    NotPublishing(Phase),
}

/// One publishing connection.
#[derive(Debug)]
pub struct PublishSession {
    request: PublishRequest,
    phase: Phase,
    handshake: Option<ClientHandshake>,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
    output: BytesMut,
    /// Bytes produced after the handshake (the server counts from its end).
    sent: u64,
    /// Bytes received after the handshake, for this client's own acknowledgements.
    received: u64,
    last_acknowledgement_sent: u64,
    /// The server's window: acknowledge it every this many bytes (0: it did not ask).
    server_window: u32,
    acknowledgements: Acknowledgements,
    acknowledged: u64,
    stream_id: Option<u32>,
    events: VecDeque<PublishEvent>,
    /// Pings sent and not answered: their timestamp and the bytes sent before them.
    pings: VecDeque<(u32, u64)>,
}

impl PublishSession {
    /// A session that begins with the handshake; `epoch` is the client's handshake time.
    pub fn new(request: PublishRequest, epoch: u32) -> Self {
        let (handshake, hello) = ClientHandshake::start(epoch);
        Self {
            request,
            phase: Phase::Handshake,
            handshake: Some(handshake),
            encoder: ChunkEncoder::default(),
            decoder: ChunkDecoder::new(MAX_INCOMING_MESSAGE),
            output: BytesMut::from(&hello[..]),
            sent: 0,
            received: 0,
            last_acknowledgement_sent: 0,
            server_window: 0,
            acknowledgements: Acknowledgements::default(),
            acknowledged: 0,
            stream_id: None,
            events: VecDeque::new(),
            pings: VecDeque::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// What is to be written to the server.
    pub fn pending_output(&self) -> &[u8] {
        &self.output
    }

    /// The driver wrote `n` bytes of [`Self::pending_output`].
    pub fn consumed(&mut self, n: usize) {
        let _ = self.output.split_to(n);
    }

    /// Bytes produced after the handshake: the offset the next message starts at.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes after the handshake the server's acknowledgements cover.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// How the server counts, as its acknowledgements have shown.
    pub fn counting(&self) -> Counting {
        self.acknowledgements.counting()
    }

    pub fn next_event(&mut self) -> Option<PublishEvent> {
        self.events.pop_front()
    }

    /// Takes bytes read from the server.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let bytes = match self.handshake.as_mut() {
            Some(handshake) => match handshake.feed(bytes)? {
                None => return Ok(()),
                Some(done) => {
                    self.handshake = None;
                    self.output.extend_from_slice(&done.c2);
                    self.begin_connect()?;
                    done.rest
                }
            },
            None => bytes.to_vec(),
        };
        self.received += bytes.len() as u64;
        self.decoder.feed(&bytes);
        while let Some(message) = self.decoder.next_message()? {
            self.handle(message)?;
        }
        if self.server_window > 0
            && self.received - self.last_acknowledgement_sent >= u64::from(self.server_window)
        {
            // The running total, as the spec means it (not the count since the last one).
            self.last_acknowledgement_sent = self.received;
            self.send_control(Control::Acknowledgement(self.received as u32))?;
        }
        Ok(())
    }

    /// Sends an audio tag's body (the FLV tag's data, enhanced header included) at
    /// `timestamp` ms; returns the offset its last byte ends at.
    pub fn send_audio(&mut self, timestamp: u32, body: Bytes) -> Result<u64, ProtocolError> {
        self.send_media(AUDIO_CHUNK_STREAM, AUDIO, timestamp, body)
    }

    /// Sends a video tag's body; returns the offset its last byte ends at.
    pub fn send_video(&mut self, timestamp: u32, body: Bytes) -> Result<u64, ProtocolError> {
        self.send_media(VIDEO_CHUNK_STREAM, VIDEO, timestamp, body)
    }

    /// Sends a script tag's body (`onMetaData` and its array) as `@setDataFrame`, which
    /// servers keep and hand to every player that joins.
    pub fn send_metadata(&mut self, timestamp: u32, body: &[u8]) -> Result<u64, ProtocolError> {
        let mut payload = amf0::encode(&[Value::string("@setDataFrame")]);
        payload.extend_from_slice(body);
        self.send_media(DATA_CHUNK_STREAM, DATA, timestamp, Bytes::from(payload))
    }

    /// Asks the server to answer with `stamp`; its answer confirms every byte sent before the
    /// ping ([`PublishEvent::PingAnswered`]), acknowledgement window or not.
    pub fn ping(&mut self, stamp: u32) -> Result<(), ProtocolError> {
        self.pings.push_back((stamp, self.sent));
        self.send_control(Control::PingRequest(stamp))
    }

    /// Whether a ping is waiting for its answer.
    pub fn ping_outstanding(&self) -> bool {
        !self.pings.is_empty()
    }

    /// Ends the publication cleanly: `FCUnpublish` and `deleteStream`.
    pub fn unpublish(&mut self) -> Result<(), ProtocolError> {
        if let Some(stream_id) = self.stream_id.take() {
            let name = Value::string(&self.request.stream_name);
            self.send_command(command::command("FCUnpublish", 0.0, Value::Null, &[name]))?;
            let id = Value::Number(f64::from(stream_id));
            self.send_command(command::command("deleteStream", 0.0, Value::Null, &[id]))?;
        }
        self.phase = Phase::Ended;
        Ok(())
    }

    fn send_media(
        &mut self,
        chunk_stream: u32,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<u64, ProtocolError> {
        let (Phase::Publishing, Some(stream_id)) = (self.phase, self.stream_id) else {
            return Err(ProtocolError::NotPublishing(self.phase));
        };
        self.send(
            chunk_stream,
            &Message {
                type_id,
                stream_id,
                timestamp,
                payload,
            },
        )?;
        Ok(self.sent)
    }

    fn send(&mut self, chunk_stream: u32, message: &Message) -> Result<(), ProtocolError> {
        let before = self.output.len();
        self.encoder
            .encode(chunk_stream, message, &mut self.output)?;
        self.sent += (self.output.len() - before) as u64;
        Ok(())
    }

    fn send_control(&mut self, control: Control) -> Result<(), ProtocolError> {
        self.send(CONTROL_CHUNK_STREAM, &control.message())
    }

    fn send_command(&mut self, message: Message) -> Result<(), ProtocolError> {
        self.send(COMMAND_CHUNK_STREAM, &message)
    }

    fn begin_connect(&mut self) -> Result<(), ProtocolError> {
        let chunk_size = self.request.chunk_size;
        self.send_control(Control::SetChunkSize(chunk_size))?;
        self.encoder.set_chunk_size(chunk_size)?;
        let connect = command::connect(&self.request.connect, CONNECT);
        self.send_command(connect)?;
        self.phase = Phase::Connecting;
        Ok(())
    }

    fn handle(&mut self, message: Message) -> Result<(), ProtocolError> {
        if let Some(control) = Control::read(&message)? {
            return self.handle_control(control);
        }
        if message.type_id == COMMAND {
            let answer = ServerCommand::read(&message.payload)?;
            return self.handle_command(answer);
        }
        // Data and anything else a server may send a publisher: nothing to do.
        Ok(())
    }

    fn handle_control(&mut self, control: Control) -> Result<(), ProtocolError> {
        match control {
            Control::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
            Control::Abort(chunk_stream) => self.decoder.abort(chunk_stream),
            Control::Acknowledgement(value) => {
                let acknowledged = self.acknowledgements.received(value, self.sent);
                if acknowledged > self.acknowledged {
                    self.acknowledged = acknowledged;
                    self.events
                        .push_back(PublishEvent::Acknowledged(acknowledged));
                }
            }
            Control::WindowAckSize(size) => self.server_window = size,
            Control::PingRequest(time) => self.send_control(Control::PingResponse(time))?,
            Control::PingResponse(stamp) => {
                // Pings older than the one answered will not be answered any more.
                if let Some(at) = self.pings.iter().position(|(sent, _)| *sent == stamp) {
                    let (_, offset) = self.pings.drain(..=at).next_back().expect("position found");
                    self.events.push_back(PublishEvent::PingAnswered(offset));
                }
            }
            Control::SetPeerBandwidth { .. } | Control::UserEvent(_) => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, answer: ServerCommand) -> Result<(), ProtocolError> {
        match answer {
            ServerCommand::Result {
                transaction,
                object,
                arguments,
            } if transaction == CONNECT && self.phase == Phase::Connecting => {
                let information = arguments.into_iter().next().unwrap_or(Value::Null);
                self.events.push_back(PublishEvent::Connected {
                    properties: object,
                    information,
                });
                self.connected()?;
            }
            ServerCommand::Result {
                transaction,
                arguments,
                ..
            } if transaction == CREATE_STREAM && self.phase == Phase::CreatingStream => {
                let stream_id = arguments
                    .first()
                    .and_then(Value::as_number)
                    .filter(|id| *id >= 0.0 && *id <= f64::from(u32::MAX))
                    .map_or(1, |id| id as u32);
                self.stream_id = Some(stream_id);
                let publish = Message {
                    stream_id,
                    ..command::command(
                        "publish",
                        PUBLISH,
                        Value::Null,
                        &[
                            Value::string(&self.request.stream_name),
                            Value::string("live"),
                        ],
                    )
                };
                self.send_command(publish)?;
                self.phase = Phase::StartingPublish;
            }
            ServerCommand::Error { transaction, info }
                if transaction == CONNECT
                    || transaction == CREATE_STREAM
                    || transaction == PUBLISH =>
            {
                let step = if transaction == CONNECT {
                    Step::Connect
                } else if transaction == CREATE_STREAM {
                    Step::CreateStream
                } else {
                    Step::Publish
                };
                self.refused(step, Status::from_info(&info));
            }
            ServerCommand::Status(status) => self.status(status),
            // Answers to releaseStream and FCPublish (some servers refuse them harmlessly),
            // onBWDone, onFCPublish.
            ServerCommand::Result { .. }
            | ServerCommand::Error { .. }
            | ServerCommand::Other(_) => {}
        }
        Ok(())
    }

    fn connected(&mut self) -> Result<(), ProtocolError> {
        self.send_control(Control::WindowAckSize(self.request.window_ack_size))?;
        let name = Value::string(&self.request.stream_name);
        for (command, transaction) in [("releaseStream", RELEASE_STREAM), ("FCPublish", FC_PUBLISH)]
        {
            let message = command::command(
                command,
                transaction,
                Value::Null,
                std::slice::from_ref(&name),
            );
            self.send_command(message)?;
        }
        self.send_command(command::command(
            "createStream",
            CREATE_STREAM,
            Value::Null,
            &[],
        ))?;
        self.phase = Phase::CreatingStream;
        Ok(())
    }

    fn status(&mut self, status: Status) {
        if status.code == "NetConnection.Connect.ReconnectRequest" {
            self.events
                .push_back(PublishEvent::ReconnectRequested(status));
        } else if status.is_error() {
            let step = match self.phase {
                Phase::Handshake | Phase::Connecting => Step::Connect,
                Phase::CreatingStream => Step::CreateStream,
                _ => Step::Publish,
            };
            self.refused(step, status);
        } else if status.code == "NetStream.Publish.Start" && self.phase == Phase::StartingPublish {
            self.phase = Phase::Publishing;
            let stream_id = self.stream_id.unwrap_or(1);
            self.events
                .push_back(PublishEvent::Publishing { stream_id });
        } else {
            self.events.push_back(PublishEvent::Status(status));
        }
    }

    fn refused(&mut self, step: Step, status: Status) {
        self.phase = Phase::Ended;
        self.events
            .push_back(PublishEvent::Refused { step, status });
    }
}

#[cfg(test)]
mod tests;
