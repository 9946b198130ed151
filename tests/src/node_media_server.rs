//! node-media-server 4 (Node.js, from npm) on free loopback ports, recording every published
//! stream as it received it (`record.auto`): an enhanced-RTMP server, for HEVC, AV1, VP9 and
//! Opus. `scripts/test` installs it into `target/test-tools/node-media-server`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::rtmp::free_port;
use crate::workspace_root;

/// Where `scripts/test` installs it.
fn program() -> PathBuf {
    workspace_root()
        .join("target/test-tools/node-media-server/node_modules/node-media-server/bin/app.js")
}

/// A running node-media-server. Killed when dropped.
pub struct NodeMediaServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl NodeMediaServer {
    pub fn start() -> Self {
        let program = program();
        assert!(
            program.exists(),
            "{} is missing; run scripts/test, which installs node-media-server with npm",
            program.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("streampub-nms-")
            .tempdir()
            .unwrap();
        let (port, http_port) = (free_port(), free_port());
        // Only RTMP, HTTP (which it needs) and recording: no RTMPS or HTTPS on fixed ports.
        let config = serde_json::json!({
            "bind": "127.0.0.1",
            "notify": {"url": ""},
            "store": {"path": dir.path().join("data"), "maxHistory": 100},
            "auth": {"play": false, "publish": false, "secret": "test", "jwt": {
                "secret": "test", "expiresIn": "24h", "refreshExpiresIn": "7d",
                "algorithm": "HS256",
                "users": [{"username": "admin", "password": "test", "role": "admin"}]}},
            "rtmp": {"port": port},
            "http": {"port": http_port},
            "webadmin": {"enable": false},
            "record": {"auto": true, "path": dir.path().join("record")},
        });
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new("node")
            .arg(&program)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("node not found; install Node.js 20");
        let mut server = Self { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("node-media-server exited ({status}): {}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "node-media-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `rtmp://127.0.0.1:<port>/live`.
    pub fn server_url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.port)
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The FLV files it recorded of `stream` (one per publishing session), oldest first.
    pub fn recordings(&self, stream: &str) -> Vec<PathBuf> {
        let dir = self.dir.path().join("record/live").join(stream);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| Some(entry.ok()?.path()))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

impl Drop for NodeMediaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
