//! The chunk stream: messages cut into chunks of at most the chunk size, each with a header
//! that says which chunk stream it continues and, compressed against that stream's last
//! header, the message's timestamp, length, type and message stream.
//!
//! The encoder opens every message with a type 0 header (absolute timestamp) on a new chunk
//! stream, after a message stream change or when time goes back, and otherwise with type 1 or
//! 2 (the timestamp as a delta); type 3 only continues a message. A timestamp field of
//! 0xFFFFFF or more is sent as 0xFFFFFF plus a 4-byte extended timestamp, and every type 3
//! continuation of that message repeats the extended field: the rule that publishers broke
//! again and again at 4 h 40 min of stream time.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size a Set Chunk Size may give (31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// An RTMP message's length is 24 bits.
pub const MAX_MESSAGE_LEN: usize = 0xFF_FFFF;
/// A timestamp field at or above this is carried in the extended timestamp.
const EXTENDED: u32 = 0xFF_FFFF;
/// Chunk streams a peer may have open at once before it is taken for hostile.
const MAX_CHUNK_STREAMS: usize = 64;

/// A message on the chunk stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message type id (8 audio, 9 video, 18 data, 20 command, 1-6 protocol control).
    pub type_id: u8,
    /// The message stream: 0 for the connection, the id `createStream` returned for media.
    pub stream_id: u32,
    /// Milliseconds, 32 bits, wrapping.
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Why a chunk stream cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("a message of {0} bytes is longer than RTMP's 24-bit length allows")]
    MessageTooLong(usize),
    #[error("the server sent a message of {length} bytes on chunk stream {chunk_stream}, more than the {limit} a publisher takes")]
    IncomingTooLong {
        chunk_stream: u32,
        length: usize,
        limit: usize,
    },
    #[error("chunk stream {0} continues a message header it never sent")]
    NoPreviousHeader(u32),
    #[error("the server opened more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    #[error("chunk size {0} is outside 1 to 2147483647")]
    BadChunkSize(u32),
    #[error("chunk stream {0} is outside 2 to 65599, the ids a basic header can carry")]
    BadChunkStream(u32),
}

/// The chunk stream ids a basic header can carry (0 and 1 are its escapes).
const CHUNK_STREAMS: std::ops::RangeInclusive<u32> = 2..=65599;

/// What the encoder remembers of a chunk stream's last message header.
#[derive(Debug, Clone, Copy)]
struct SentHeader {
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Writes messages as chunks.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: usize,
    streams: HashMap<u32, SentHeader>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE as usize,
            streams: HashMap::new(),
        }
    }
}

impl ChunkEncoder {
    /// Uses `size` for the messages encoded from now on (after the Set Chunk Size message
    /// that announces it).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// Appends `message` as chunks of chunk stream `chunk_stream` (2 to 65599) to `out`.
    pub fn encode(
        &mut self,
        chunk_stream: u32,
        message: &Message,
        out: &mut BytesMut,
    ) -> Result<(), ChunkError> {
        let length = message.payload.len();
        if length > MAX_MESSAGE_LEN {
            return Err(ChunkError::MessageTooLong(length));
        }
        if !CHUNK_STREAMS.contains(&chunk_stream) {
            return Err(ChunkError::BadChunkStream(chunk_stream));
        }
        let length = length as u32;
        let previous = self.streams.get(&chunk_stream).copied();
        let (format, field) = match previous {
            Some(previous)
                if previous.stream_id == message.stream_id
                    && message.timestamp >= previous.timestamp =>
            {
                let delta = message.timestamp - previous.timestamp;
                if previous.length == length && previous.type_id == message.type_id {
                    (2, delta)
                } else {
                    (1, delta)
                }
            }
            _ => (0, message.timestamp),
        };
        self.streams.insert(
            chunk_stream,
            SentHeader {
                timestamp: message.timestamp,
                length,
                type_id: message.type_id,
                stream_id: message.stream_id,
            },
        );
        write_basic_header(format, chunk_stream, out);
        let short_field = field.min(EXTENDED);
        out.extend_from_slice(&short_field.to_be_bytes()[1..]);
        if format <= 1 {
            out.extend_from_slice(&length.to_be_bytes()[1..]);
            out.extend_from_slice(&[message.type_id]);
        }
        if format == 0 {
            out.extend_from_slice(&message.stream_id.to_le_bytes());
        }
        let extended = field >= EXTENDED;
        if extended {
            out.extend_from_slice(&field.to_be_bytes());
        }
        let mut chunks = message.payload.chunks(self.chunk_size);
        if let Some(first) = chunks.next() {
            out.extend_from_slice(first);
        }
        for chunk in chunks {
            write_basic_header(3, chunk_stream, out);
            if extended {
                out.extend_from_slice(&field.to_be_bytes());
            }
            out.extend_from_slice(chunk);
        }
        Ok(())
    }
}

fn write_basic_header(format: u8, chunk_stream: u32, out: &mut BytesMut) {
    let format = format << 6;
    match chunk_stream {
        2..=63 => out.extend_from_slice(&[format | chunk_stream as u8]),
        64..=319 => out.extend_from_slice(&[format, (chunk_stream - 64) as u8]),
        _ => {
            let id = (chunk_stream - 64) as u16;
            out.extend_from_slice(&[format | 1]);
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
}

/// What the decoder knows of a chunk stream: its last header and the message being received.
#[derive(Debug)]
struct ReceivedHeader {
    timestamp: u32,
    /// The timestamp field of the header that opened the last message (absolute or delta).
    field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The message being received, while it is incomplete.
    partial: Option<BytesMut>,
}

/// Reads the chunks a server sends into messages.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: usize,
    max_message: usize,
    buffer: BytesMut,
    streams: HashMap<u32, ReceivedHeader>,
}

impl ChunkDecoder {
    /// A decoder that refuses messages longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE as usize,
            max_message,
            buffer: BytesMut::new(),
            streams: HashMap::new(),
        }
    }

    /// Takes bytes read from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The server's chunk size from now on (its Set Chunk Size).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// Drops the message being received on `chunk_stream` (the server's Abort).
    pub fn abort(&mut self, chunk_stream: u32) {
        if let Some(stream) = self.streams.get_mut(&chunk_stream) {
            stream.partial = None;
        }
    }

    /// The next whole message, once its last chunk is in.
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.read_chunk()? {
                ChunkRead::NeedMore => return Ok(None),
                ChunkRead::Message(message) => return Ok(Some(message)),
                ChunkRead::Part => {}
            }
        }
    }

    fn read_chunk(&mut self) -> Result<ChunkRead, ChunkError> {
        let input = &self.buffer[..];
        let Some(&first) = input.first() else {
            return Ok(ChunkRead::NeedMore);
        };
        let format = first >> 6;
        let (chunk_stream, basic_len) = match first & 0x3F {
            0 if input.len() >= 2 => (64 + u32::from(input[1]), 2),
            1 if input.len() >= 3 => (64 + u32::from(u16::from_le_bytes([input[1], input[2]])), 3),
            0 | 1 => return Ok(ChunkRead::NeedMore),
            id => (u32::from(id), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(format)];
        if input.len() < basic_len + header_len {
            return Ok(ChunkRead::NeedMore);
        }
        let header = &input[basic_len..basic_len + header_len];
        let previous = self.streams.get(&chunk_stream);
        if format != 0 && previous.is_none() {
            return Err(ChunkError::NoPreviousHeader(chunk_stream));
        }
        if previous.is_none() && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(ChunkError::TooManyChunkStreams);
        }
        let short_field = (format < 3).then(|| u24(&header[0..3]));
        let extended = match short_field {
            Some(field) => field == EXTENDED,
            None => previous.is_some_and(|previous| previous.extended),
        };
        let extended_len = if extended { 4 } else { 0 };
        let before_payload = basic_len + header_len + extended_len;
        if input.len() < before_payload {
            return Ok(ChunkRead::NeedMore);
        }
        let field = match (short_field, extended) {
            (_, true) => u32::from_be_bytes(
                input[basic_len + header_len..before_payload]
                    .try_into()
                    .unwrap(),
            ),
            (Some(field), false) => field,
            (None, false) => 0,
        };
        // The message this chunk belongs to: its length, and how much of it is in.
        let continuing = format == 3 && previous.is_some_and(|previous| previous.partial.is_some());
        let length = match format {
            0 | 1 => u24(&header[3..6]),
            _ => previous.map_or(0, |previous| previous.length),
        };
        if length as usize > self.max_message {
            return Err(ChunkError::IncomingTooLong {
                chunk_stream,
                length: length as usize,
                limit: self.max_message,
            });
        }
        let received = match previous.and_then(|previous| previous.partial.as_ref()) {
            Some(partial) if continuing => partial.len(),
            _ => 0,
        };
        let part_len = (length as usize - received).min(self.chunk_size);
        if input.len() < before_payload + part_len {
            return Ok(ChunkRead::NeedMore);
        }
        // The whole chunk is in: take it.
        let type_id = match format {
            0 | 1 => header[6],
            _ => previous.map_or(0, |previous| previous.type_id),
        };
        let stream_id = match format {
            0 => u32::from_le_bytes(header[7..11].try_into().unwrap()),
            _ => previous.map_or(0, |previous| previous.stream_id),
        };
        self.buffer.advance(before_payload);
        let part = self.buffer.split_to(part_len);
        let stream = self
            .streams
            .entry(chunk_stream)
            .or_insert_with(|| ReceivedHeader {
                timestamp: 0,
                field: 0,
                extended: false,
                length: 0,
                type_id: 0,
                stream_id: 0,
                partial: None,
            });
        if !continuing {
            // A new message: its timestamp from this header, or (type 3) the last delta again.
            stream.timestamp = match format {
                0 => field,
                1 | 2 => stream.timestamp.wrapping_add(field),
                _ => stream.timestamp.wrapping_add(stream.field),
            };
            if format < 3 {
                stream.field = field;
                stream.extended = extended;
            }
            stream.length = length;
            stream.type_id = type_id;
            stream.stream_id = stream_id;
            stream.partial = Some(BytesMut::with_capacity(length as usize));
        }
        let partial = stream.partial.as_mut().expect("set above");
        partial.extend_from_slice(&part);
        if partial.len() < stream.length as usize {
            return Ok(ChunkRead::Part);
        }
        let payload = stream.partial.take().expect("set above").freeze();
        Ok(ChunkRead::Message(Message {
            type_id: stream.type_id,
            stream_id: stream.stream_id,
            timestamp: stream.timestamp,
            payload,
        }))
    }
}

enum ChunkRead {
    NeedMore,
    Part,
    Message(Message),
}

fn u24(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]])
}

#[cfg(test)]
mod tests;
