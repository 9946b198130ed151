//! A real RTMP server for tests: nginx with Debian's RTMP module, started as an ordinary process
//! on a free loopback port with a temporary config, recording every stream it receives.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `libnginx-mod-rtmp` installs the module.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// A running (or stopped) nginx-rtmp. Killed when dropped.
pub struct RtmpServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RtmpServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let mut server = Self::reserve();
        server.restart();
        server
    }

    /// Starts a server that drops a publisher after `idle` without data (nginx-rtmp's
    /// `drop_idle_publisher`, like SRS's `publish.normal_timeout`).
    pub fn start_dropping_idle_publishers(idle: Duration) -> Self {
        let mut server =
            Self::reserve_with(&format!("drop_idle_publisher {}s;", idle.as_secs().max(1)));
        server.restart();
        server
    }

    /// Picks a port and writes the config without starting the server (for "the server comes
    /// up later" tests); call [`RtmpServer::restart`] to start it.
    pub fn reserve() -> Self {
        Self::reserve_with("")
    }

    /// [`RtmpServer::reserve`] with more directives in the `live` application.
    fn reserve_with(application: &str) -> Self {
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("streampub-rtmp-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("record")).unwrap();
        let config = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
load_module {RTMP_MODULE};
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{
            live on;
            record all;
            record_path {root}/record;
            record_unique on;
            {application}
        }}
    }}
}}
",
            root = dir.path().display()
        );
        std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
        Self {
            port,
            dir,
            child: None,
        }
    }

    /// Starts (again) on the same port with the same recordings directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        assert!(
            Path::new(RTMP_MODULE).exists(),
            "{RTMP_MODULE} is missing; run scripts/test, which installs libnginx-mod-rtmp"
        );
        let root = self.dir.path();
        let child = Command::new(nginx_program())
            .arg("-p")
            .arg(root)
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .arg("-e")
            .arg(root.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx not found; run scripts/test, which installs nginx");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nginx exited ({status}): {}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully, so its recordings are complete.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::send_signal(child.id(), crate::Signal::QUIT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtmp://127.0.0.1:PORT/live`.
    pub fn server_url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.port)
    }

    /// The recordings made so far (one per publishing session), oldest first.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("record"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "flv"))
            .collect();
        files.sort_by_key(|path| {
            (
                std::fs::metadata(path).unwrap().modified().unwrap(),
                path.clone(),
            )
        });
        files
    }

    /// The recordings of the stream `name` (nginx names them `<name>-<time>.flv`), oldest first.
    pub fn recordings_of(&self, name: &str) -> Vec<PathBuf> {
        let prefix = format!("{name}-");
        self.recordings()
            .into_iter()
            .filter(|path| {
                path.file_name()
                    .and_then(|file| file.to_str())
                    .is_some_and(|file| file.starts_with(&prefix))
            })
            .collect()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx from `PATH`, or where Debian installs it (`/usr/sbin` is not on every `PATH`).
fn nginx_program() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|directory| directory.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
