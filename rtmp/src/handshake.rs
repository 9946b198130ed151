//! The client's side of the simple RTMP handshake: C0+C1 out, S0+S1+S2 in, C2 (S1 echoed) out.
//!
//! The simple handshake (no digest) is what nginx-rtmp, SRS, node-media-server, MediaMTX and
//! the platforms' ingests accept from publishers; only Flash players needed the digest one.

use thiserror::Error;

/// The RTMP version every server speaks.
const VERSION: u8 = 3;
/// C1, S1, C2 and S2 are this long.
const PACKET_LEN: usize = 1536;
/// What the client sends in all (C0, C1, C2): some servers count it in their acknowledgements.
pub const CLIENT_HANDSHAKE_BYTES: u64 = 1 + 2 * PACKET_LEN as u64;

/// Why the handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error(
        "the server answered with byte 0x{0:02x}, not RTMP version 3{hint}",
        hint = describe_first_byte(*.0)
    )]
    NotRtmp(u8),
}

fn describe_first_byte(byte: u8) -> &'static str {
    match byte {
        b'H' => " (an HTTP server: check the port)",
        0x15 | 0x16 => " (a TLS server: use rtmps://)",
        _ => "",
    }
}

/// The client's handshake in progress.
#[derive(Debug)]
pub struct ClientHandshake {
    received: Vec<u8>,
}

/// The handshake is done: send `c2`, then go on with the connection; `rest` is what the server
/// sent after S2 (the start of its chunk stream).
#[derive(Debug)]
pub struct HandshakeDone {
    pub c2: Vec<u8>,
    pub rest: Vec<u8>,
}

impl ClientHandshake {
    /// Starts a handshake: returns it and C0+C1 to send. `epoch` is the client's time field.
    pub fn start(epoch: u32) -> (Self, Vec<u8>) {
        let mut hello = Vec::with_capacity(1 + PACKET_LEN);
        hello.push(VERSION);
        hello.extend_from_slice(&epoch.to_be_bytes());
        hello.resize(1 + PACKET_LEN, 0);
        let handshake = Self {
            received: Vec::with_capacity(1 + 2 * PACKET_LEN),
        };
        (handshake, hello)
    }

    /// Takes bytes from the server; returns what to send and what follows once S0+S1+S2 are
    /// all in.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<HandshakeDone>, HandshakeError> {
        self.received.extend_from_slice(bytes);
        if let Some(&version) = self.received.first() {
            if version != VERSION {
                return Err(HandshakeError::NotRtmp(version));
            }
        }
        let whole = 1 + 2 * PACKET_LEN;
        if self.received.len() < whole {
            return Ok(None);
        }
        let c2 = self.received[1..1 + PACKET_LEN].to_vec();
        let rest = self.received.split_off(whole);
        Ok(Some(HandshakeDone { c2, rest }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c2_echoes_s1_and_what_follows_s2_is_kept() {
        let (mut handshake, hello) = ClientHandshake::start(7);
        assert_eq!(hello.len(), 1537);
        assert_eq!(hello[0], 3);
        let mut answer = vec![3];
        answer.extend((0..PACKET_LEN).map(|i| i as u8));
        answer.extend_from_slice(&hello[1..]);
        answer.extend_from_slice(b"chunks");
        // In two reads, split inside S1.
        assert!(handshake.feed(&answer[..700]).unwrap().is_none());
        let done = handshake.feed(&answer[700..]).unwrap().unwrap();
        assert_eq!(done.c2, answer[1..1 + PACKET_LEN]);
        assert_eq!(done.rest, b"chunks");
    }

    #[test]
    fn an_http_or_tls_server_is_named() {
        let (mut handshake, _) = ClientHandshake::start(0);
        let error = handshake.feed(b"HTTP/1.1 400").unwrap_err();
        assert!(error.to_string().contains("HTTP server"), "{error}");
        let (mut handshake, _) = ClientHandshake::start(0);
        let error = handshake.feed(&[0x15, 3, 1]).unwrap_err();
        assert!(error.to_string().contains("rtmps://"), "{error}");
    }
}
