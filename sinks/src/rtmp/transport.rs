//! What carries a session's RTMP bytes: the TCP socket as it is (`rtmp://`), or TLS over it
//! (`rtmps://`), driven sans-IO by the session's own loop so that one socket, one output
//! buffer and one backpressure rule serve both.
//!
//! The kernel counts what the peer's TCP acknowledged in socket bytes, which under TLS are
//! records. Each time RTMP bytes are encrypted, the transport notes where their last record
//! ends on the socket; RTMP bytes count as delivered once the socket bytes up to that point
//! are.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read as _, Write as _};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use rustls::ClientConnection;
use streampub_core::plugin::SinkError;

use super::tls::{tls_error, TlsSettings};

/// The socket itself, or TLS over it.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain,
    Tls(Box<TlsTransport>),
}

impl Transport {
    /// TLS as `settings` say (to their server name, also sent as SNI); the client's first
    /// handshake message goes into `socket_output`.
    pub(crate) fn tls(
        settings: &TlsSettings,
        host: &str,
        socket_output: &mut BytesMut,
    ) -> Result<Self, SinkError> {
        let connection =
            ClientConnection::new(Arc::clone(&settings.config), settings.server_name.clone())
                .map_err(|error| tls_error(error, host, true))?;
        let mut tls = TlsTransport {
            connection,
            host: host.to_owned(),
            waiting: Vec::new(),
            received: Vec::new(),
            rtmp_bytes: 0,
            socket_bytes: 0,
            record_ends: RecordEnds::default(),
            closed: false,
        };
        tls.write_records(socket_output)?;
        Ok(Self::Tls(Box::new(tls)))
    }

    /// Adds RTMP bytes to what goes on the socket.
    pub(crate) fn send(
        &mut self,
        rtmp: &[u8],
        socket_output: &mut BytesMut,
    ) -> Result<(), SinkError> {
        match self {
            Self::Plain => {
                socket_output.extend_from_slice(rtmp);
                Ok(())
            }
            Self::Tls(tls) => tls.send(rtmp, socket_output),
        }
    }

    /// The RTMP bytes in what was read from the socket. TLS may answer (the handshake) into
    /// `socket_output`.
    pub(crate) fn receive<'a>(
        &'a mut self,
        read: &'a [u8],
        socket_output: &mut BytesMut,
    ) -> Result<Cow<'a, [u8]>, SinkError> {
        match self {
            Self::Plain => Ok(Cow::Borrowed(read)),
            Self::Tls(tls) => tls.receive(read, socket_output).map(Cow::Borrowed),
        }
    }

    /// Whether a TLS handshake is still under way.
    pub(crate) fn tls_handshaking(&self) -> bool {
        match self {
            Self::Plain => false,
            Self::Tls(tls) => tls.connection.is_handshaking(),
        }
    }

    /// Whether every RTMP byte is on the socket, of `written` socket bytes, with
    /// `socket_output` still to write (under TLS, only a `close_notify` may be left).
    pub(crate) fn rtmp_all_written(&self, written: u64, socket_output: &BytesMut) -> bool {
        match self {
            Self::Plain => socket_output.is_empty(),
            Self::Tls(tls) => tls.waiting.is_empty() && tls.record_ends.rtmp_end <= written,
        }
    }

    /// RTMP bytes the peer has, given the socket bytes its TCP acknowledged.
    pub(crate) fn rtmp_delivered(&mut self, socket_acknowledged: u64) -> u64 {
        match self {
            Self::Plain => socket_acknowledged,
            Self::Tls(tls) => tls.delivered(socket_acknowledged),
        }
    }

    /// Ends TLS with `close_notify` after everything sent so far; nothing is sent after it.
    pub(crate) fn close(&mut self, socket_output: &mut BytesMut) -> Result<(), SinkError> {
        match self {
            Self::Plain => Ok(()),
            Self::Tls(tls) => {
                tls.connection.send_close_notify();
                tls.closed = true;
                tls.write_records(socket_output)
            }
        }
    }
}

/// A TLS client session over the socket.
#[derive(Debug)]
pub(crate) struct TlsTransport {
    connection: ClientConnection,
    host: String,
    /// RTMP bytes held until the handshake is done, so that each is encrypted once and its
    /// record's end known.
    waiting: Vec<u8>,
    /// RTMP bytes decrypted from the last read.
    received: Vec<u8>,
    /// RTMP bytes encrypted so far.
    rtmp_bytes: u64,
    /// Socket bytes (records) produced so far.
    socket_bytes: u64,
    record_ends: RecordEnds,
    /// `close_notify` went out: what the session still produces (an acknowledgement of the
    /// server's last words) is not sent.
    closed: bool,
}

impl TlsTransport {
    fn send(&mut self, mut rtmp: &[u8], socket_output: &mut BytesMut) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        if self.connection.is_handshaking() {
            self.waiting.extend_from_slice(rtmp);
            return Ok(());
        }
        // rustls takes at most its buffer limit at a time; each part is written out at once.
        while !rtmp.is_empty() {
            let taken = self.connection.writer().write(rtmp).map_err(io_error)?;
            if taken == 0 {
                return Err(SinkError::retryable("TLS: the session takes no more data"));
            }
            self.rtmp_bytes += taken as u64;
            rtmp = &rtmp[taken..];
            self.write_records(socket_output)?;
        }
        Ok(())
    }

    fn receive(
        &mut self,
        mut read: &[u8],
        socket_output: &mut BytesMut,
    ) -> Result<&[u8], SinkError> {
        self.received.clear();
        while !read.is_empty() {
            let handshaking = self.connection.is_handshaking();
            let taken = self.connection.read_tls(&mut read).map_err(io_error)?;
            self.connection
                .process_new_packets()
                .map_err(|error| tls_error(error, &self.host, handshaking))?;
            self.read_plaintext()?;
            if taken == 0 {
                break;
            }
        }
        self.write_records(socket_output)?;
        if !self.connection.is_handshaking() && !self.waiting.is_empty() {
            let waiting = std::mem::take(&mut self.waiting);
            self.send(&waiting, socket_output)?;
        }
        Ok(&self.received)
    }

    /// Appends what rustls has decrypted to `received`. Its reader says `WouldBlock` once it
    /// has given everything (what it read is appended all the same).
    fn read_plaintext(&mut self) -> Result<(), SinkError> {
        match self.connection.reader().read_to_end(&mut self.received) {
            Err(error) if error.kind() != ErrorKind::WouldBlock => Err(io_error(error)),
            _ => Ok(()),
        }
    }

    /// Moves the records rustls has ready into `socket_output`, noting where the RTMP bytes
    /// encrypted so far end.
    fn write_records(&mut self, socket_output: &mut BytesMut) -> Result<(), SinkError> {
        let mut writer = socket_output.writer();
        while self.connection.wants_write() {
            let written = self.connection.write_tls(&mut writer).map_err(io_error)?;
            self.socket_bytes += written as u64;
        }
        self.record_ends.note(self.socket_bytes, self.rtmp_bytes);
        Ok(())
    }

    fn delivered(&mut self, socket_acknowledged: u64) -> u64 {
        self.record_ends.delivered(socket_acknowledged)
    }
}

fn io_error(error: std::io::Error) -> SinkError {
    SinkError::retryable(format!("TLS: {error}"))
}

/// Where encrypted RTMP bytes end on the socket: (socket bytes, RTMP bytes) once that many
/// socket bytes were produced, oldest first, taken off as they are delivered. As many as
/// writes in flight: bounded by the socket's send buffer and the session's output limit.
#[derive(Debug, Default)]
struct RecordEnds {
    ends: VecDeque<(u64, u64)>,
    /// RTMP bytes known delivered.
    delivered: u64,
    /// RTMP bytes noted so far, and where on the socket the last of them ends.
    rtmp_bytes: u64,
    rtmp_end: u64,
}

impl RecordEnds {
    fn note(&mut self, socket_bytes: u64, rtmp_bytes: u64) {
        if rtmp_bytes > self.rtmp_bytes {
            self.ends.push_back((socket_bytes, rtmp_bytes));
            self.rtmp_bytes = rtmp_bytes;
            self.rtmp_end = socket_bytes;
        }
    }

    /// RTMP bytes all of whose records are within the first `socket_acknowledged` bytes.
    fn delivered(&mut self, socket_acknowledged: u64) -> u64 {
        while let Some(&(socket_end, rtmp_end)) = self.ends.front() {
            if socket_end > socket_acknowledged {
                break;
            }
            self.delivered = rtmp_end;
            self.ends.pop_front();
        }
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_pass_through_and_count_as_they_are() {
        let mut transport = Transport::Plain;
        let mut output = BytesMut::new();
        transport.send(b"abc", &mut output).unwrap();
        assert_eq!(&output[..], b"abc");
        assert_eq!(&*transport.receive(b"xyz", &mut output).unwrap(), b"xyz");
        assert_eq!(transport.rtmp_delivered(2), 2);
    }

    #[test]
    fn rtmp_bytes_count_as_delivered_only_with_their_whole_record() {
        let mut ends = RecordEnds::default();
        // A handshake of 300 socket bytes without RTMP bytes, then 1000 RTMP bytes in records
        // ending at 1329, then 500 more ending at 1858.
        ends.note(300, 0);
        ends.note(1329, 1000);
        ends.note(1858, 1500);
        assert_eq!(ends.delivered(1000), 0, "the first record is not all there");
        assert_eq!(ends.delivered(1329), 1000);
        assert_eq!(ends.delivered(1800), 1000);
        assert_eq!(ends.delivered(5000), 1500);
        assert_eq!(ends.delivered(10), 1500, "never less than known");
        ends.note(2000, 1500);
        assert!(ends.ends.is_empty(), "nothing new to note");
        assert_eq!(ends.rtmp_end, 1858, "a close_notify after them is not RTMP");
    }
}
