//! Large bodies stream through Postern both ways without being held in memory: the real binary (`postern serve`)
//! moves a 200 MB upload and a 200 MB download while its peak resident memory stays small.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;

use crate::support::client::{BoxError, Client};
use crate::support::files::{Listen, TempDir, free_port, start_stack, write_config};

/// 200 MiB.
const TOTAL: u64 = 200 * 1024 * 1024;

/// One chunk of the pattern both directions use: byte `i` is `i % 256` (the echo's `/download` pattern).
const CHUNK: usize = 64 * 1024;

/// The peak resident memory Postern may reach while moving 400 MB.
const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;

fn pattern_chunk() -> Bytes {
    (0..CHUNK).map(|i| (i % 256) as u8).collect::<Vec<u8>>().into()
}

/// An upload body made lazily, chunk after chunk, as Postern reads it.
struct PatternUpload {
    remaining: u64,
    chunk: Bytes,
}

impl http_body::Body for PatternUpload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `TOTAL` bytes of the pattern.
fn expected_sha256() -> String {
    let chunk = pattern_chunk();
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for _ in 0..TOTAL / CHUNK as u64 {
        digest.update(&chunk);
    }
    hex(digest.finish().as_ref())
}

/// The child process, killed when dropped (also when a test panics).
struct ChildGuard {
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status is readable");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM is in /proc/<pid>/status")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `postern serve` on `port`; `None` when it exited (e.g. the port was taken meanwhile).
async fn spawn_postern(config: &Path, dir: &TempDir, port: u16) -> Option<ChildGuard> {
    let log = dir.path().join(format!("postern-{port}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("POSTERN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("postern starts");
    let mut guard = ChildGuard { child, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = Client::new();
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            eprintln!("postern exited with {status}:\n{}", guard.log());
            return None;
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            // Only our child sends this path, unauthenticated, to our echo upstream: whoever else may have taken
            // the port in the meantime (another test's Postern, say) answers differently.
            let probe = format!("/probe-{}-{port}", std::process::id());
            let r = client.get(format!("http://127.0.0.1:{port}{probe}")).api().send().await;
            if serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|echo| echo["uri"] == probe.as_str()) {
                return Some(guard);
            }
        }
        assert!(Instant::now() < deadline, "postern did not start listening:\n{}", guard.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_200_mb_upload_and_download_stream_through_postern_with_flat_memory() {
    let stack = start_stack().await;
    let dir = TempDir::new("big-transfer");
    dir.write(
        "policies/files.toml",
        &format!("[[route]]\nname = \"files\"\nhost = \"*\"\nupstream = \"{}\"\npublic = true\n", stack.echo.url()),
    );
    let mut postern = None;
    let mut port = 0;
    for _ in 0..3 {
        port = free_port();
        let config = write_config(&dir, Listen::Http(port), &stack.provider);
        postern = spawn_postern(&config, &dir, port).await;
        if postern.is_some() {
            break;
        }
    }
    let postern = postern.expect("postern serve started");
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new();
    let expected = expected_sha256();

    let upload = client
        .post(format!("{url}/upload"))
        .header("content-type", "application/octet-stream")
        .stream(PatternUpload { remaining: TOTAL, chunk: pattern_chunk() }.boxed())
        .send()
        .await;

    assert_eq!(upload.status, StatusCode::OK, "{}", upload.text());
    let received = upload.json();
    assert_eq!(received["received_bytes"], TOTAL, "{received}");
    assert_eq!(received["sha256"], expected.as_str());

    let download = client.get(format!("{url}/download?bytes={TOTAL}")).send_streaming().await;

    assert_eq!(download.status(), StatusCode::OK);
    let mut body = download.into_body();
    let mut count = 0u64;
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the download streams").into_data() {
            count += data.len() as u64;
            digest.update(&data);
        }
    }
    assert_eq!(count, TOTAL);
    assert_eq!(hex(digest.finish().as_ref()), expected);

    let peak = postern.peak_rss_kib();
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "postern's peak RSS was {peak} KiB (limit {PEAK_RSS_LIMIT_KIB} KiB):\n{}",
        postern.log()
    );
    eprintln!("postern's peak RSS while moving 2 x 200 MiB: {peak} KiB");
}
