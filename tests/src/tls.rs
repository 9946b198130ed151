//! TLS in front of a test server: `stunnel` on a free loopback port with a self-signed
//! certificate for `127.0.0.1` (made by `openssl`), forwarding to a plain TCP port, as an
//! RTMPS ingest terminates TLS before its RTMP server.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::rtmp::free_port;

/// A running stunnel. Killed when dropped.
pub struct TlsTunnel {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl TlsTunnel {
    /// Accepts TLS on a free port and forwards to `127.0.0.1:target`.
    pub fn start(target: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("streampub-tls-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                // A server's own certificate, not a CA's (openssl's default for -x509):
                // rustls refuses a CA certificate presented as a server's.
                "-addext",
                "basicConstraints=critical,CA:FALSE",
            ])
            .arg("-keyout")
            .arg(root.join("key.pem"))
            .arg("-out")
            .arg(root.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl not found; run scripts/test, which installs it");
        assert!(status.success(), "openssl could not make a certificate");
        let port = free_port();
        let config = format!(
            "foreground = yes\npid =\noutput = {root}/stunnel.log\n[tunnel]\naccept = \
             127.0.0.1:{port}\nconnect = 127.0.0.1:{target}\ncert = {root}/cert.pem\nkey = \
             {root}/key.pem\n",
            root = root.display()
        );
        std::fs::write(root.join("stunnel.conf"), config).unwrap();
        let child = Command::new("stunnel")
            .arg(root.join("stunnel.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel not found; run scripts/test, which installs stunnel4");
        let mut tunnel = Self { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = tunnel.child.try_wait().unwrap() {
                panic!("stunnel exited ({status})");
            }
            assert!(Instant::now() < deadline, "stunnel did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        tunnel
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The self-signed certificate, in PEM: the CA file that makes it trusted.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
}

impl Drop for TlsTunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
