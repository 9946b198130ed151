//! How a finished session lets go of its socket.
//!
//! Dropping a TCP socket whose receive queue holds bytes (a server's last acknowledgement or
//! status, which keep coming until the very end) makes the kernel answer with a reset instead
//! of a FIN, and a reset makes the server's kernel drop what it had received and its program
//! had not read yet: the end of the stream, confirmed by the server's TCP, never reaches the
//! recording (seen with `ffmpeg -listen 1`, which lost the last second). So the session first
//! says it sends nothing more (FIN) and then reads, discarding, until the server closes too or
//! `LINGER` has passed: by then the server has read everything, and the queue is empty.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// How long a closing session waits for the server to close after its FIN.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Ends the connection with a FIN, then reads until the peer closes, fails, or `linger` passes.
pub(crate) async fn close_gracefully(
    mut reader: impl AsyncRead + Unpin,
    mut writer: impl AsyncWrite + Unpin,
    linger: Duration,
) {
    if writer.shutdown().await.is_err() {
        return;
    }
    let mut buffer = [0; 4096];
    let _ = tokio::time::timeout(linger, async {
        while matches!(reader.read(&mut buffer).await, Ok(read) if read > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read as _, Write as _};
    use std::time::Instant;

    use tokio::io::AsyncWriteExt as _;

    use super::*;

    const STREAM: usize = 1024 * 1024;

    /// A server that keeps talking (as one acknowledging and answering pings does) and reads
    /// slowly gets every byte and an orderly end, not a reset.
    #[tokio::test]
    async fn a_chatty_slow_server_reads_the_whole_stream_and_its_end() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut talker = socket.try_clone().unwrap();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && talker.write_all(&[0; 12]).is_ok() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            // The client has written and is closing before this reads a byte.
            std::thread::sleep(Duration::from_secs(1));
            let (mut received, mut buffer) = (0, vec![0; 64 * 1024]);
            loop {
                match socket.read(&mut buffer) {
                    Ok(0) => break Ok(received),
                    Ok(read) => received += read,
                    Err(error) => break Err(error.kind()),
                }
            }
        });
        let socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let (reader, mut writer) = socket.into_split();
        writer.write_all(&vec![7; STREAM]).await.unwrap();
        // Everything is in the server's kernel, talk from the server in this one's.
        tokio::time::sleep(Duration::from_millis(200)).await;
        close_gracefully(reader, writer, LINGER).await;
        let received = tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
        assert_ne!(received, Err(ErrorKind::ConnectionReset));
        assert_eq!(received, Ok(STREAM));
    }
}
