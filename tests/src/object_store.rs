//! A real S3-compatible store for tests: moto in server mode (PyPI's `moto[server]`, which
//! `scripts/test` installs into `target/test-tools/python`) on a free loopback port, and a
//! small client (rusty-s3's signing over ureq) to make buckets, upload and list.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::rtmp::free_port;
use crate::workspace_root;

const SIGNED_FOR: Duration = Duration::from_secs(600);

fn python_tool(name: &str) -> PathBuf {
    workspace_root()
        .join("target/test-tools/python/bin")
        .join(name)
}

/// Access keys for the store.
#[derive(Debug, Clone)]
pub struct AccessKeys {
    pub id: String,
    pub secret: String,
}

/// A running moto server; killed when dropped.
pub struct MotoServer {
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl MotoServer {
    /// A store that takes any credentials.
    pub fn start() -> Self {
        Self::spawn(free_port(), None)
    }

    /// A store that checks credentials as AWS does (moto's IAM): the keys a test needs are made
    /// with [`MotoServer::create_user`] in its first `setup_requests` requests.
    pub fn start_checking_credentials(setup_requests: u32) -> Self {
        Self::spawn(free_port(), Some(setup_requests))
    }

    /// Another store on the same port (the first is gone: an outage ends), empty.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        *self = Self::spawn(port, None);
    }

    /// Kills the server: the store is gone until [`MotoServer::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(port: u16, unchecked_requests: Option<u32>) -> Self {
        let program = python_tool("moto_server");
        assert!(
            program.exists(),
            "{} is missing; run scripts/test, which installs moto[server] from PyPI",
            program.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("streampub-moto-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("moto.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(&program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        if let Some(count) = unchecked_requests {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", count.to_string());
        }
        let child = command.spawn().expect("moto_server did not start");
        let mut server = Self {
            port,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("moto_server exited ({status}): {}", server.log());
            }
            assert!(Instant::now() < deadline, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The requests the server has logged whose line contains `text` (its access log).
    pub fn requests_containing(&self, text: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains(" HTTP/1.1") && line.contains(text))
            .count()
    }

    /// An IAM user with keys, allowed everything on S3 when `allowed`, else nothing (with moto
    /// boto3 from the same environment talks to its IAM; it needs four requests, or two).
    pub fn create_user(&self, name: &str, allowed: bool) -> AccessKeys {
        let script = r#"
import boto3, json, sys
endpoint, name, allowed = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName=name)
key = iam.create_access_key(UserName=name)["AccessKey"]
if allowed:
    document = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    policy = iam.create_policy(PolicyName=name + "-s3", PolicyDocument=json.dumps(document))
    iam.attach_user_policy(UserName=name, PolicyArn=policy["Policy"]["Arn"])
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let printed = self.boto3(
            "creating the user",
            script,
            &[name, if allowed { "1" } else { "0" }],
        );
        let (id, secret) = printed.trim().split_once(' ').unwrap();
        AccessKeys {
            id: id.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// Makes `bucket` and uploads `file` as `key` into it with boto3, signing with `keys` in
    /// the header: what a store that checks credentials needs (the client of
    /// [`MotoServer::bucket`] presigns).
    pub fn create_bucket_with_object(
        &self,
        keys: &AccessKeys,
        bucket: &str,
        key: &str,
        file: &std::path::Path,
    ) {
        let script = r#"
import boto3, sys
endpoint, key_id, secret, bucket, key, path = sys.argv[1:7]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key_id, aws_secret_access_key=secret)
s3.create_bucket(Bucket=bucket)
with open(path, "rb") as body:
    s3.put_object(Bucket=bucket, Key=key, Body=body.read())
"#;
        let path = file.to_str().expect("test paths are UTF-8");
        self.boto3(
            "the upload",
            script,
            &[&keys.id, &keys.secret, bucket, key, path],
        );
    }

    /// Runs `script` with the environment's Python (and its boto3), the server's endpoint and
    /// `args` as its arguments; what it printed.
    fn boto3(&self, what: &str, script: &str, args: &[&str]) -> String {
        let output = Command::new(python_tool("python"))
            .args(["-c", script, &self.endpoint()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A client of `bucket` signing with `keys` (any, when the server takes any).
    pub fn bucket(&self, bucket: &str, keys: &AccessKeys) -> StoreBucket {
        StoreBucket {
            bucket: Bucket::new(
                self.endpoint().parse().unwrap(),
                UrlStyle::Path,
                bucket.to_owned(),
                "us-east-1",
            )
            .unwrap(),
            credentials: Credentials::new(&keys.id, &keys.secret),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent(),
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keys any moto server that does not check credentials takes.
pub fn any_keys() -> AccessKeys {
    AccessKeys {
        id: "AKIATESTING".to_owned(),
        secret: "testing-secret".to_owned(),
    }
}

/// One bucket of the store, as a test uploads to it and looks into it.
pub struct StoreBucket {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
}

impl StoreBucket {
    pub fn create(&self) {
        let url = self
            .bucket
            .create_bucket(&self.credentials)
            .sign(SIGNED_FOR);
        let response = self.agent.put(url.as_str()).send_empty().unwrap();
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let response = self.agent.put(url.as_str()).send(bytes).unwrap();
        assert!(
            response.status().is_success(),
            "put {key}: {}",
            response.status()
        );
    }

    /// Every key under `prefix`, in the store's order.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let mut response = self.agent.get(url.as_str()).call().unwrap();
            assert!(
                response.status().is_success(),
                "list: {}",
                response.status()
            );
            let text = response.body_mut().read_to_string().unwrap();
            let page = ListObjectsV2::parse_response(&text).unwrap();
            keys.extend(page.contents.into_iter().map(|content| content.key));
            token = page.next_continuation_token;
            if token.is_none() {
                return keys;
            }
        }
    }
}
