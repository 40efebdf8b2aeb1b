//! The real `drsn serve` binary against what a hostile client sends: every decoder and
//! route gets inputs whose headers lie about their size, rates that would make the
//! resampler allocate gigabytes, bombs, hostile archive entries and paths, malformed
//! protocol messages and slow clients. Each must be refused with the expected status and
//! error type, quickly, without a server path in the answer; the process must stay up and
//! its peak resident memory bounded.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::files::{black_png, gz, mat, npy, wav_header};
use crate::common::process::{start, Served};
use crate::common::*;
use serde_json::{json, Value};

const TOKEN: &str = "hostile-test-token";

/// The limits the service runs under in this test (small, so that bombs are cheap to build).
const FLAGS: &[&str] = &[
    "--body-limit",
    "4194304",
    "--upload-limit",
    "8388608",
    "--unpacked-limit",
    "8388608",
    "--max-samples",
    "4000000",
    "--max-inflated-bytes",
    "16777216",
    "--max-request-windows",
    "64",
    "--max-parts",
    "32",
    "--request-timeout-s",
    "3",
    "--header-timeout-s",
    "2",
];

/// Peak resident memory allowed for the whole run: the process with its fixture models takes
/// about 150 MiB; what the limits above allow a request to decode is a few tens more.
const PEAK_RSS_BOUND_KB: u64 = 512 * 1024;

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    token: bool,
    status: u16,
    /// `error_type` of the JSON answer; `None` for the Open Inference Protocol's bodies.
    error_type: Option<&'static str>,
    /// A piece of the message that says which limit or what was wrong.
    says: &'static str,
}

fn case(name: &'static str, path: impl Into<String>, content_type: &str, body: Vec<u8>) -> Case {
    Case {
        name,
        method: "POST",
        path: path.into(),
        headers: vec![("content-type", content_type.to_string())],
        body,
        token: false,
        status: 422,
        error_type: Some("validation"),
        says: "",
    }
}

impl Case {
    fn expect(mut self, status: u16, error_type: &'static str, says: &'static str) -> Self {
        self.status = status;
        self.error_type = Some(error_type);
        self.says = says;
        self
    }

    fn v2(mut self, status: u16, says: &'static str) -> Self {
        self.status = status;
        self.error_type = None;
        self.says = says;
        self
    }

    fn with_token(mut self) -> Self {
        self.token = true;
        self
    }

    fn get(mut self) -> Self {
        self.method = "GET";
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

fn json_body(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn multipart(boundary: &str, parts: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..parts {
        write!(
            out,
            "--{boundary}\r\ncontent-disposition: form-data; name=\"f{i}\"; filename=\"{i}.png\"\r\ncontent-type: image/png\r\n\r\nx\r\n"
        )
        .unwrap();
    }
    write!(out, "--{boundary}--\r\n").unwrap();
    out
}

/// A tar archive whose entries' raw names and types are written as a hostile tool would.
fn tar(entries: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(*kind));
        let raw = &mut h.as_old_mut().name;
        let n = name.len().min(raw.len());
        raw[..n].copy_from_slice(&name[..n]);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn v2_infer(input: Value) -> Vec<u8> {
    json_body(json!({"inputs": [input]}))
}

fn cases() -> Vec<Case> {
    let window = f32_bytes(&signal(2048, 1));
    let zeros = vec![0.0f32; 2048];
    let mut deep = "[".repeat(10_000);
    deep.push_str(&"]".repeat(10_000));
    let long_name = vec![b'a'; 1 << 20];
    let bomb = tar(&[(b"normal/a.csv", b'0', &vec![b'0'; 64 << 20])]);
    vec![
        // Rates and resampling (the requests that took the process down).
        case("json rate 100000007", "/diagnose", "application/json",
            json_body(json!({"model": BEARING, "signal": zeros, "sample_rate": 100_000_007})))
            .expect(422, "validation", "--max-sample-rate"),
        case("json rate 10000019 (prime, seconds of resampling)", "/diagnose", "application/json",
            json_body(json!({"model": BEARING, "signal": zeros, "sample_rate": 10_000_019})))
            .expect(422, "validation", "--max-sample-rate"),
        case("json rate with a prime ratio", "/diagnose", "application/json",
            json_body(json!({"model": BEARING, "signal": zeros, "sample_rate": 48_001})))
            .expect(422, "validation", "--max-rate-block"),
        case("json rate 1 Hz", "/diagnose", "application/json",
            json_body(json!({"model": BEARING, "signal": zeros, "sample_rate": 1})))
            .expect(422, "validation", "--max-resample-ratio"),
        case("json rate on an image model", "/diagnose", "application/json",
            json_body(json!({"model": DIGITS, "signal": vec![vec![0.0; 28]; 28], "sample_rate": 12000})))
            .expect(422, "validation", "takes images"),
        case("raw 1 MiB at 1 Hz", format!("/diagnose?model={BEARING}&sample_rate=1"), "application/octet-stream",
            vec![0u8; 1 << 20])
            .expect(422, "validation", "--max-resample-ratio"),
        case("raw at 4294967295 Hz", format!("/diagnose?model={BEARING}&sample_rate=4294967295"),
            "application/octet-stream", window.clone())
            .expect(422, "validation", "--max-sample-rate"),
        case("raw at 0 Hz", format!("/diagnose?model={BEARING}&sample_rate=0"), "application/octet-stream",
            window.clone())
            .expect(422, "validation", "--min-sample-rate"),
        case("raw upsampled past --max-samples", format!("/diagnose?model={BEARING}&sample_rate=200"),
            "application/octet-stream", f32_bytes(&vec![0.5; 70_000]))
            .expect(413, "payload_too_large", "--max-samples"),
        case("raw NaN", format!("/diagnose?model={BEARING}"), "application/octet-stream", f32_bytes(&[f32::NAN; 4096]))
            .expect(422, "validation", "NaN"),
        case("raw 7 bytes", format!("/diagnose?model={BEARING}"), "application/octet-stream", vec![1; 7])
            .expect(422, "validation", "4-byte"),
        case("raw stride 1 makes too many windows", format!("/diagnose?model={BEARING}&stride=1"),
            "application/octet-stream", f32_bytes(&signal(4096, 2)))
            .expect(413, "payload_too_large", "--max-request-windows"),
        case("stride 0", format!("/diagnose?model={BEARING}&stride=0"), "application/octet-stream", window.clone())
            .expect(422, "validation", "stride"),
        case("stride not a number", format!("/diagnose?model={BEARING}&stride=abc"), "application/octet-stream",
            window.clone())
            .expect(422, "validation", "query"),
        // WAV headers that lie.
        case("8-bit WAV at 4294967291 Hz", format!("/diagnose?model={BEARING}"), "audio/wav",
            wav_header(4_294_967_291, 1, 8, 4096, &[128; 4096]))
            .expect(422, "validation", "--max-sample-rate"),
        case("WAV at 0 Hz", format!("/diagnose?model={BEARING}"), "audio/wav", wav_header(0, 1, 16, 8, &[0; 8]))
            .expect(422, "validation", "WAV"),
        case("WAV with 65535 channels", format!("/diagnose?model={BEARING}"), "audio/wav",
            wav_header(12_000, 65_535, 8, 65_535, &vec![0; 65_535]))
            .expect(413, "payload_too_large", "--max-channels"),
        case("WAV whose data chunk claims 4 GiB", format!("/diagnose?model={BEARING}"), "audio/wav",
            wav_header(12_000, 1, 8, u32::MAX - 15, &[128; 64]))
            .expect(413, "payload_too_large", "--max-samples"),
        case("WAV cut after RIFF", format!("/diagnose?model={BEARING}"), "audio/wav", b"RIFF\x10\x00\x00\x00WAVE".to_vec())
            .expect(422, "validation", "WAV"),
        case("WAV channel out of range", format!("/diagnose?model={BEARING}&channel=9"), "audio/wav",
            wav_header(12_000, 1, 16, 4096 * 2, &vec![0; 4096 * 2]))
            .expect(422, "validation", "channel"),
        // JSON windows.
        case("JSON 10000 levels deep", "/diagnose", "application/json",
            format!("{{\"model\": \"{BEARING}\", \"signal\": {deep}}}").into_bytes())
            .expect(422, "validation", "recursion"),
        case("JSON more windows than allowed", "/diagnose", "application/json",
            json_body(json!({"model": BEARING, "signals": vec![vec![0.0; 2048]; 65]})))
            .expect(413, "payload_too_large", "--max-request-windows"),
        case("JSON ragged", "/diagnose", "application/json",
            json_body(json!({"model": BEARING, "signals": [[1.0, 2.0], [3.0]]})))
            .expect(422, "validation", "rectangular"),
        case("JSON 1e400", "/diagnose", "application/json",
            format!("{{\"model\": \"{BEARING}\", \"signal\": [1e400]}}").into_bytes())
            .expect(422, "validation", "JSON"),
        case("JSON not JSON", "/diagnose", "application/json", b"{\"model\": ".to_vec())
            .expect(422, "validation", "JSON"),
        case("JSON unknown field", "/diagnose", "application/json", json_body(json!({"model": BEARING, "evil": 1})))
            .expect(422, "validation", "unknown field"),
        case("no content type", "/diagnose", "", window.clone()).expect(415, "unsupported_media_type", "Content-Type"),
        case("application/xml", "/diagnose", "application/xml", window.clone())
            .expect(415, "unsupported_media_type", "application/xml"),
        case("body over --body-limit", format!("/diagnose?model={BEARING}"), "application/octet-stream",
            vec![0; 5 << 20])
            .expect(413, "payload_too_large", "--body-limit"),
        case("unknown model", "/diagnose?model=nope", "application/octet-stream", window.clone())
            .expect(404, "unknown_model", "nope"),
        case("unknown version", format!("/diagnose?model={BEARING}&version=99"), "application/octet-stream",
            window.clone())
            .expect(404, "unknown_model", "99"),
        // The physics options of a recording.
        case("a bearing not in the table", format!("/diagnose?model={BEARING}&bearing=nope"), "application/octet-stream",
            window.clone())
            .expect(422, "validation", "built-in table"),
        case("a shaft speed of 0 rpm", format!("/diagnose?model={BEARING}&bearing=cwru-de&rpm=0"),
            "application/octet-stream", window.clone())
            .expect(422, "validation", "not a shaft speed"),
        case("a shaft speed of 1e300 rpm", format!("/diagnose?model={BEARING}&bearing=cwru-de&rpm=1e300"),
            "application/octet-stream", window.clone())
            .expect(422, "validation", "not a shaft speed"),
        // Images.
        case("PNG of 16384x16384 pixels", format!("/diagnose?model={DIGITS}"), "image/png", black_png(16_384))
            .expect(413, "payload_too_large", "--max-image-side"),
        case("PNG cut short", format!("/diagnose?model={DIGITS}"), "image/png", b"\x89PNG\r\n\x1a\n\0\0".to_vec())
            .expect(422, "validation", "PNG"),
        case("JPEG garbage", format!("/diagnose?model={DIGITS}"), "image/jpeg", vec![0xFF, 0xD8, 0xFF, 0, 1, 2])
            .expect(422, "validation", "JPEG"),
        // Multipart.
        case("multipart with 1000 parts", format!("/diagnose?model={DIGITS}"), "multipart/form-data; boundary=XyZ",
            multipart("XyZ", 1000))
            .expect(413, "payload_too_large", "--max-parts"),
        case("multipart without its boundary", format!("/diagnose?model={DIGITS}"), "multipart/form-data; boundary=XyZ",
            b"--nope\r\n\r\n".to_vec())
            .expect(400, "bad_request", "multipart"),
        case("multipart with no boundary parameter", format!("/diagnose?model={DIGITS}"), "multipart/form-data",
            multipart("XyZ", 1))
            .expect(400, "bad_request", "multipart"),
        // The Open Inference Protocol.
        case("v2 negative shape", format!("/v2/models/{BEARING}/infer"), "application/json",
            v2_infer(json!({"name": "input", "shape": [-1, 2048], "datatype": "FP32", "data": [0.0]})))
            .v2(400, "negative"),
        case("v2 shape that overflows", format!("/v2/models/{BEARING}/infer"), "application/json",
            v2_infer(json!({"name": "input", "shape": [4611686018427387904i64, 4611686018427387904i64], "datatype": "FP32", "data": [0.0]})))
            .v2(400, "too large"),
        case("v2 binary size that lies", format!("/v2/models/{BEARING}/infer"), "application/octet-stream",
            {
                let header = json_body(json!({"inputs": [{"name": "input", "shape": [1, 2048], "datatype": "FP32",
                    "parameters": {"binary_data_size": 8192}}]}));
                let mut body = header.clone();
                body.extend(&window[..100]);
                body
            })
            .header("inference-header-content-length", "0")
            .v2(400, "JSON"),
        case("v2 header length beyond the body", format!("/v2/models/{BEARING}/infer"), "application/octet-stream",
            b"{}".to_vec())
            .header("inference-header-content-length", "18446744073709551615")
            .v2(400, "Inference-Header-Content-Length"),
        case("v2 data 10000 levels deep", format!("/v2/models/{BEARING}/infer"), "application/json",
            format!("{{\"inputs\": [{{\"name\": \"input\", \"shape\": [1, 2048], \"datatype\": \"FP32\", \"data\": {deep}}}]}}").into_bytes())
            .v2(400, "recursion"),
        case("v2 batch over --max-request-windows", format!("/v2/models/{BEARING}/infer"), "application/json",
            v2_infer(json!({"name": "input", "shape": [65, 2048], "datatype": "FP32", "data": vec![0.0f32; 65 * 2048]})))
            .v2(413, "--max-request-windows"),
        case("v2 version that is not a number", format!("/v2/models/{BEARING}/versions/abc/infer"), "application/json",
            b"{}".to_vec())
            .v2(404, "whole numbers"),
        // Authentication.
        case("jobs without a token", "/jobs", "application/json", b"{}".to_vec())
            .expect(401, "unauthorized", "Bearer"),
        case("jobs with a wrong token", "/jobs", "application/json", b"{}".to_vec())
            .header("authorization", "Bearer nope")
            .expect(401, "unauthorized", "not the configured one"),
        case("a lower-case bearer scheme is accepted", "/jobs", "application/json", b"{}".to_vec())
            .header("authorization", format!("bearer {TOKEN}"))
            .expect(422, "validation", "missing field"),
        // Uploads: shapes, inflation, archive entries.
        case("npy of shape (2**63, 2)", "/datasets/h/files?label=a&file=a.npy", "application/octet-stream",
            npy("(9223372036854775808, 2)", &[0; 64])).with_token()
            .expect(413, "payload_too_large", "more than 2^64"),
        case("npy of shape (2**40, 2)", "/datasets/h/files?label=a&file=a.npy", "application/octet-stream",
            npy("(1099511627776, 2)", &[0; 64])).with_token()
            .expect(413, "payload_too_large", "--max-samples"),
        case("npy of 3 dimensions", "/datasets/h/files?label=a&file=a.npy", "application/octet-stream",
            npy("(2, 2, 2)", &[0; 64])).with_token()
            .expect(422, "validation", "1-D and 2-D"),
        case("mat whose dimensions overflow", "/datasets/h/files?label=a&file=a.mat", "application/octet-stream",
            mat(u32::MAX, u32::MAX, &[0; 16], false)).with_token()
            .expect(413, "payload_too_large", "--max-samples"),
        case("mat variable inflating past the limit", "/datasets/h/files?label=a&file=a.mat",
            "application/octet-stream", mat(3_000_000, 1, &vec![0; 24_000_000], true)).with_token()
            .expect(413, "payload_too_large", "--max-inflated-bytes"),
        case("csv with 100000 columns", "/datasets/h/files?label=a&file=a.csv", "text/csv",
            "1,".repeat(100_000).into_bytes()).with_token()
            .expect(413, "payload_too_large", "--max-channels"),
        case("tar entry '.'", "/datasets/h/archive", "application/x-tar", tar(&[(b".", b'0', b"1\n")])).with_token()
            .expect(422, "validation", "names no file"),
        case("tar file/folder clash", "/datasets/h/archive", "application/x-tar",
            tar(&[(b"a/b.csv", b'0', b"1\n"), (b"a/b.csv/c.csv", b'0', b"1\n")])).with_token()
            .expect(422, "validation", "as a file"),
        case("tar nested 40 deep", "/datasets/h/archive", "application/x-tar",
            tar(&[("d/".repeat(40).as_bytes(), b'5', b""), (format!("{}x.csv", "d/".repeat(40)).as_bytes(), b'0', b"1\n")]))
            .with_token()
            .expect(422, "validation", "too deep"),
        case("tar symlink out", "/datasets/h/archive", "application/x-tar", tar(&[(b"a/x.csv", b'2', b"")]))
            .with_token()
            .expect(422, "validation", "not accepted"),
        case("tar long-name record of 1 MiB", "/datasets/h/archive", "application/x-tar",
            tar(&[(b"././@LongLink", b'L', &long_name), (b"a/x.csv", b'0', b"1\n")])).with_token()
            .expect(413, "payload_too_large", "long-name"),
        case("tar.gz bomb", "/datasets/h/archive", "application/gzip", gz(&bomb)).with_token()
            .expect(413, "payload_too_large", "8388608 bytes"),
        case("zip that is not one", "/datasets/h/archive", "application/zip", b"PK\x03\x04garbage".to_vec())
            .with_token()
            .expect(422, "validation", "archive"),
        // Jobs asking for more than a job may have.
        case("job with stride 1", "/jobs", "application/json",
            json_body(json!({"model": "m", "dataset": "cwru.csv", "data": {"train_stride": 1}}))).with_token()
            .expect(422, "validation", "--job-min-stride"),
        case("job with a huge custom network", "/jobs", "application/json",
            json_body(json!({"model": "m", "dataset": "cwru.csv", "spec": {
                "arch": "drsn-cw", "dim": "1d", "in_channels": 1, "input_size": [2048],
                "stem": {"channels": 4, "kernel": 3, "stride": 2},
                "stages": [{"channels": 100000, "units": 1, "stride": 2}], "classes": 2}}))).with_token()
            .expect(422, "validation", "100000 channels"),
        case("job with 10^9 epochs", "/jobs", "application/json",
            json_body(json!({"model": "m", "dataset": "cwru.csv", "train": {"epochs": 1_000_000_000}}))).with_token()
            .expect(422, "validation", "epochs"),
        case("job on an absolute path", "/jobs", "application/json",
            json_body(json!({"model": "m", "dataset": "/etc"}))).with_token()
            .expect(422, "validation", "absolute"),
        case("job climbing out with ..", "/jobs", "application/json",
            json_body(json!({"model": "m", "dataset": "../../etc"}))).with_token()
            .expect(422, "validation", ".."),
        case("jobs list limit out of range", "/jobs?limit=100000", "", Vec::new()).get()
            .expect(422, "validation", "limit"),
        case("no such route", "/../../etc/passwd", "", Vec::new()).get().expect(404, "not_found", "no route"),
    ]
}

/// Sends a request line and then one header byte every 100 ms; how long until the service
/// closed the connection.
async fn trickle_headers(addr: &str) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST /diagnose HTTP/1.1\r\nhost: drsn\r\nx-slow: ").await.unwrap();
    let started = Instant::now();
    let mut answer = [0u8; 512];
    loop {
        assert!(started.elapsed() < Duration::from_secs(20), "a header trickle held its connection");
        if stream.write_all(b"x").await.is_err() {
            return started.elapsed();
        }
        // Closed (an answer before the close, or nothing yet, reads on).
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut answer)).await {
            return started.elapsed();
        }
    }
}

/// Sends HTTP/2's connection preface; what came back before the close, and when it closed.
async fn http2_preface(addr: &str) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.ok();
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

/// Peak resident set size of a process, from `/proc/<pid>/status` (kB).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

fn assert_alive(served: &mut Served, after: &str) {
    assert!(served.child.try_wait().unwrap().is_none(), "drsn serve died after {after}");
}

/// A data root with manifests a hostile user could place there: a `..` path, an absolute
/// path, a symlink leading out, a FIFO (which would block a reader forever).
fn hostile_root(root: &Path, outside: &Path) {
    std::fs::write(outside.join("secret.csv"), "1\n2\n").unwrap();
    std::fs::write(root.join("cwru.csv"), "file,label\nx.csv,a\n").unwrap();
    std::fs::write(root.join("climb.csv"), "file,label\n../outside/secret.csv,a\nok.csv,b\n").unwrap();
    std::fs::write(root.join("absolute.csv"), format!("file,label\n{},a\n", outside.join("secret.csv").display()))
        .unwrap();
    std::os::unix::fs::symlink(outside.join("secret.csv"), root.join("link.csv")).unwrap();
    std::fs::write(root.join("linked.csv"), "file,label\nlink.csv,a\nok.csv,b\n").unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo.csv").display().to_string()).unwrap();
    // SAFETY: creating a FIFO at a path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::write(root.join("fifo-manifest.csv"), "file,label\nfifo.csv,a\nok.csv,b\n").unwrap();
    std::fs::write(root.join("ok.csv"), "1\n2\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_quickly_and_the_service_stays_up_with_bounded_memory() {
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    let outside = outer.path().join("outside");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    hostile_root(&data, &outside);
    let mut served = start(&data, FLAGS, &[("DRSN_TOKEN", TOKEN.as_ref())]);
    let client = reqwest::Client::new();
    let server_paths = [outer.path().canonicalize().unwrap().display().to_string(), outer.path().display().to_string()];

    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for c in cases {
        let mut request = client.request(c.method.parse().unwrap(), served.url(&c.path));
        for (name, value) in &c.headers {
            if !value.is_empty() {
                request = request.header(*name, value);
            }
        }
        if c.token {
            request = request.bearer_auth(TOKEN);
        }
        let started = Instant::now();
        let response = request.body(c.body).send().await.unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let took = started.elapsed();
        assert_eq!(status, c.status, "{}: {text}", c.name);
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: not JSON: {text}", c.name));
        if let Some(kind) = c.error_type {
            assert_eq!(body["error_type"], kind, "{}: {text}", c.name);
        }
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(c.says), "{}: {message:?} does not say {:?}", c.name, c.says);
        for path in &server_paths {
            assert!(!text.contains(path.as_str()), "{}: the answer shows a server path: {text}", c.name);
        }
        assert!(took < Duration::from_secs(1), "{}: refused only after {took:?}", c.name);
        assert_alive(&mut served, c.name);
    }

    // A client that sends half its body and stops: answered 408 at the deadline, not held.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(b"{\"model\": \"".to_vec())).await.unwrap();
    let started = Instant::now();
    let slow = client
        .post(served.url("/diagnose"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status().as_u16(), 408);
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    drop(tx);

    // A client that trickles its headers a byte at a time never goes idle: its connection is
    // dropped once the head has taken --header-timeout-s (2 s here), not held for ever.
    let closed_after = trickle_headers(&served.addr).await;
    assert!(closed_after > Duration::from_millis(1500) && closed_after < Duration::from_secs(5), "{closed_after:?}");
    assert_alive(&mut served, "a header trickle");

    // HTTP/2 is not spoken (it would need limits of its own): its preface is answered as a bad
    // HTTP/1 request and the connection closed at once.
    let (answer, took) = http2_preface(&served.addr).await;
    assert!(answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5") || answer.is_empty(), "{answer}");
    assert!(took < Duration::from_secs(1), "HTTP/2 preface held for {took:?}");

    // Jobs over manifests that lead out of the data root, or at a FIFO, fail with a reason
    // that names the file as the job does, never the server's folders.
    for (manifest, says) in [
        ("climb.csv", "'..'"),
        ("absolute.csv", "relative"),
        ("linked.csv", "outside the data root"),
        ("fifo-manifest.csv", "not a regular file"),
    ] {
        let request = json!({"model": "hostile", "dataset": manifest, "data": {"default_sample_rate": 12000}});
        let (status, job) = served.submit(&request).await;
        assert_eq!(status, 202, "{manifest}: {job}");
        let id = job["id"].as_str().unwrap_or_else(|| panic!("{manifest}: {job}")).to_string();
        let view = served.finished(&id, Duration::from_secs(20)).await;
        assert_eq!(view["status"], "failed", "{manifest}: {view}");
        let error = view["error"].as_str().unwrap();
        assert!(error.contains(says), "{manifest}: {error}");
        for path in &server_paths {
            assert!(!error.contains(path.as_str()), "{manifest}: the error shows a server path: {error}");
        }
    }
    assert_alive(&mut served, "the jobs");

    // Still serving: a real request gets its answer.
    let ok = client
        .post(served.url("/diagnose"))
        .json(&json!({"model": BEARING, "signal": signal(2048, 3)}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let peak = peak_rss_kb(served.child.id());
    assert!(peak < PEAK_RSS_BOUND_KB, "peak resident memory {peak} kB, over {PEAK_RSS_BOUND_KB} kB");
    println!("peak resident memory after the hostile requests: {} MiB", peak / 1024);
}
