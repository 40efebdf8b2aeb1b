//! A real browser for the dashboard's tests: Debian's headless Chromium driven over
//! WebDriver by its chromedriver (a child process on a loopback port), through fantoccini.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub struct Browser {
    pub client: Client,
    driver: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

fn installed(name: &str) -> PathBuf {
    ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: the browser tests need Debian's chromium and chromium-driver (scripts/test.sh installs them)")
        })
}

impl Browser {
    /// Headless Chromium at `width` x `height` CSS pixels, with a fresh profile and the
    /// flags it needs on a machine without internet.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = installed("chromium");
        let chromedriver = installed("chromedriver");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        // Its own process group, so that the browsers it starts go with it even when a
        // failing test never closes the session.
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile folder");
        let status = format!("http://127.0.0.1:{port}/status");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(&status).await.map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "chromedriver did not answer on port {port} within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        // The window size is the outer one; make the page itself `width` wide.
        let inner: Value = client.execute("return [window.innerWidth, window.innerHeight]", vec![]).await.unwrap();
        let (iw, ih) = (inner[0].as_u64().unwrap() as u32, inner[1].as_u64().unwrap() as u32);
        client.set_window_size(2 * width - iw, 2 * height - ih).await.expect("window resized");
        Browser { client, driver, port, _profile: profile }
    }

    /// Polls `expression` (JavaScript) until it is truthy; returns its value.
    pub async fn wait_for(&self, expression: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let script = format!("try {{ return ({expression}); }} catch (e) {{ return null; }}");
        loop {
            let value = self.client.execute(&script, vec![]).await.expect("script runs");
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let page = self.eval("document.getElementById('message')?.textContent").await;
                panic!("`{expression}` did not hold within {timeout:?} (alert line: {page})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn eval(&self, expression: &str) -> Value {
        self.client.execute(&format!("return ({expression});"), vec![]).await.expect("script runs")
    }

    /// Goes to `url` and waits until its page has rendered (a new hash does not reload the
    /// page, so the old page's flag is cleared first).
    pub async fn open(&self, url: &str) {
        let _ = self
            .client
            .execute("const m = document.getElementById('main'); if (m) m.dataset.ready = 'stale';", vec![])
            .await;
        // Going to the very URL already shown changes nothing (not even the hash): reload.
        let here = self.client.current_url().await.is_ok_and(|u| u.as_str() == url);
        if here { self.client.refresh().await } else { self.client.goto(url).await }.expect("page opens");
        self.wait_for("document.getElementById('main')?.dataset.ready === 'true'", Duration::from_secs(30)).await;
    }

    /// The number of points a chart drew (0 when it drew none or is missing).
    pub async fn points(&self, chart: &str) -> u64 {
        self.eval(&format!("Number(document.getElementById('{chart}')?.dataset.points || 0)"))
            .await
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client.find(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("no {selector}: {e}"))
    }

    /// The browser console's error lines so far (drained: each is returned once).
    pub async fn console_errors(&self) -> Vec<String> {
        let session = self.client.session_id().await.expect("session").expect("a session id");
        let url = format!("http://127.0.0.1:{}/session/{session}/se/log", self.port);
        let log: Value = reqwest::Client::new()
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("log request")
            .json()
            .await
            .expect("log JSON");
        log["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(path, png).expect("screenshot written");
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// chromedriver and every browser it started.
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.driver.id()) {
            // SAFETY: a plain signal to the process group this test started.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
    }
}
