//! Protocol control messages (types 1 to 6, on chunk stream 2 and message stream 0): chunk
//! size, abort, acknowledgements and their window, peer bandwidth, and user control events
//! (stream begin, pings).

use bytes::Bytes;
use thiserror::Error;

use crate::chunk::Message;

pub const SET_CHUNK_SIZE: u8 = 1;
pub const ABORT: u8 = 2;
pub const ACKNOWLEDGEMENT: u8 = 3;
pub const USER_CONTROL: u8 = 4;
pub const WINDOW_ACK_SIZE: u8 = 5;
pub const SET_PEER_BANDWIDTH: u8 = 6;

/// The chunk stream protocol control messages travel on.
pub const CONTROL_CHUNK_STREAM: u32 = 2;

const PING_REQUEST: u16 = 6;
const PING_RESPONSE: u16 = 7;

/// A protocol control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    SetChunkSize(u32),
    /// Drop the partly received message on this chunk stream.
    Abort(u32),
    /// The peer has received this many bytes (32 bits, wrapping; see
    /// [`crate::acknowledgements`]).
    Acknowledgement(u32),
    /// Acknowledge every time this many more bytes have come.
    WindowAckSize(u32),
    /// How much the peer may have unacknowledged; `limit` is hard (0), soft (1) or dynamic (2).
    SetPeerBandwidth {
        size: u32,
        limit: u8,
    },
    /// The server asks for an answer with the same timestamp.
    PingRequest(u32),
    PingResponse(u32),
    /// Another user control event (stream begin, end, dry, buffer length, recorded).
    UserEvent(u16),
}

/// A control message too short for its type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("protocol control message of type {type_id} is {length} bytes, too short")]
pub struct ControlError {
    pub type_id: u8,
    pub length: usize,
}

impl Control {
    /// Reads a control message; `None` if `message` is not one.
    pub fn read(message: &Message) -> Result<Option<Self>, ControlError> {
        let payload = &message.payload[..];
        let too_short = || ControlError {
            type_id: message.type_id,
            length: payload.len(),
        };
        let u32_at = |offset: usize| -> Result<u32, ControlError> {
            payload
                .get(offset..offset + 4)
                .map(|bytes| u32::from_be_bytes(bytes.try_into().unwrap()))
                .ok_or_else(too_short)
        };
        Ok(Some(match message.type_id {
            // The top bit of a chunk size is reserved: servers that set it mean the rest.
            SET_CHUNK_SIZE => Self::SetChunkSize(u32_at(0)? & 0x7FFF_FFFF),
            ABORT => Self::Abort(u32_at(0)?),
            ACKNOWLEDGEMENT => Self::Acknowledgement(u32_at(0)?),
            WINDOW_ACK_SIZE => Self::WindowAckSize(u32_at(0)?),
            SET_PEER_BANDWIDTH => Self::SetPeerBandwidth {
                size: u32_at(0)?,
                limit: *payload.get(4).unwrap_or(&2),
            },
            USER_CONTROL => {
                let event = payload
                    .get(0..2)
                    .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
                    .ok_or_else(too_short)?;
                match event {
                    PING_REQUEST => Self::PingRequest(u32_at(2)?),
                    PING_RESPONSE => Self::PingResponse(u32_at(2)?),
                    other => Self::UserEvent(other),
                }
            }
            _ => return Ok(None),
        }))
    }

    /// The message that carries it.
    pub fn message(self) -> Message {
        let (type_id, payload): (u8, Vec<u8>) = match self {
            Self::SetChunkSize(size) => (SET_CHUNK_SIZE, size.to_be_bytes().to_vec()),
            Self::Abort(chunk_stream) => (ABORT, chunk_stream.to_be_bytes().to_vec()),
            Self::Acknowledgement(bytes) => (ACKNOWLEDGEMENT, bytes.to_be_bytes().to_vec()),
            Self::WindowAckSize(size) => (WINDOW_ACK_SIZE, size.to_be_bytes().to_vec()),
            Self::SetPeerBandwidth { size, limit } => {
                let mut payload = size.to_be_bytes().to_vec();
                payload.push(limit);
                (SET_PEER_BANDWIDTH, payload)
            }
            Self::PingRequest(time) => (USER_CONTROL, user_event(PING_REQUEST, time)),
            Self::PingResponse(time) => (USER_CONTROL, user_event(PING_RESPONSE, time)),
            Self::UserEvent(event) => (USER_CONTROL, user_event(event, 0)),
        };
        Message {
            type_id,
            stream_id: 0,
            timestamp: 0,
            payload: Bytes::from(payload),
        }
    }
}

fn user_event(event: u16, value: u32) -> Vec<u8> {
    let mut payload = event.to_be_bytes().to_vec();
    payload.extend_from_slice(&value.to_be_bytes());
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_read_back_as_written() {
        for control in [
            Control::SetChunkSize(4096),
            Control::Abort(6),
            Control::Acknowledgement(0xF000_0001),
            Control::WindowAckSize(2_500_000),
            Control::SetPeerBandwidth {
                size: 5_000_000,
                limit: 2,
            },
            Control::PingRequest(77),
            Control::PingResponse(77),
            Control::UserEvent(0),
        ] {
            assert_eq!(Control::read(&control.message()).unwrap(), Some(control));
        }
    }

    #[test]
    fn a_short_control_message_is_an_error_not_a_panic() {
        let message = Message {
            type_id: WINDOW_ACK_SIZE,
            stream_id: 0,
            timestamp: 0,
            payload: Bytes::from_static(&[1, 2]),
        };
        assert_eq!(
            Control::read(&message),
            Err(ControlError {
                type_id: 5,
                length: 2
            })
        );
    }
}
