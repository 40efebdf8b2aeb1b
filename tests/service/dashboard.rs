//! The dashboard in a real browser (headless Chromium over WebDriver) against a real server
//! with the shipped models and training jobs on the real CWRU data: a real recording
//! uploaded and its verdict and charts checked, an example tried, the confusion matrix read
//! back against the card, a job started and watched, another cancelled, a version
//! activated, keyboard navigation and tablet width, and no console errors throughout.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::browser::Browser;
use crate::common::real::*;
use crate::common::*;

use drsn::registry::ModelCard;

const TOKEN: &str = "dashboard-token";
const CHARTS: [&str; 4] = ["chart-signal", "chart-probabilities", "chart-blocks", "chart-spectrum"];

async fn service() -> TestApp {
    Setup { models_dir: shipped(), ..Setup::with_jobs(&shared_root(), Some(TOKEN)) }.spawn().await
}

/// A real CWRU recording the shipped model never trained on (the test stretch of the
/// inner-race record at load 1), as a WAV file.
fn held_out_recording(dir: &Path) -> (std::path::PathBuf, String, Vec<u8>) {
    let card = ModelCard::read(&shipped().join("cwru-bearing")).unwrap();
    let stretch = cwru_test_stretches(&card).into_iter().find(|s| s.file.contains("IR007_1")).expect("IR007 at load 1");
    let wav = wav_f32(std::slice::from_ref(&stretch.samples), 12_000);
    let path = dir.join("ir007-load1.wav");
    std::fs::write(&path, &wav).unwrap();
    (path, stretch.label, wav)
}

/// A tar of class folders made of the example recordings: two inner-race files, one outer.
fn class_archive(dir: &Path) -> std::path::PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut tar = tar::Builder::new(Vec::new());
    for (label, file, name) in [
        ("inner_race", "inner-race-IR007.wav", "a.wav"),
        ("inner_race", "inner-race-IR007.wav", "b.wav"),
        ("outer_race", "outer-race-OR007.wav", "a.wav"),
    ] {
        let bytes = std::fs::read(examples.join(file)).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("{label}/{name}"), bytes.as_slice()).unwrap();
    }
    let path = dir.join("pump7.tar");
    std::fs::write(&path, tar.into_inner().unwrap()).unwrap();
    path
}

async fn no_console_errors(browser: &Browser, after: &str) {
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors after {after}: {errors:#?}");
}

async fn expect_charts_drawn(browser: &Browser, charts: &[&str]) {
    for chart in charts {
        browser
            .wait_for(
                &format!("Number(document.getElementById('{chart}')?.dataset.points) > 0"),
                Duration::from_secs(20),
            )
            .await;
    }
}

/// Types the token into the dialog the first guarded action opens.
async fn give_token(browser: &Browser) {
    browser.wait_for("document.getElementById('token-dialog').open", Duration::from_secs(10)).await;
    browser.css("#token-input").await.send_keys(TOKEN).await.unwrap();
    browser.css("#token-ok").await.click().await.unwrap();
}

async fn set_field(browser: &Browser, name: &str, value: &str) {
    let field = browser.css(&format!("#job-form [name={name}]")).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn select(browser: &Browser, selector: &str, value: &str) {
    browser.css(selector).await.select_by_value(value).await.unwrap_or_else(|e| panic!("{selector} = {value}: {e}"));
}

/// "Try an example" with one of the shipped recordings; waits for the verdict it must show
/// and for every chart.
async fn try_example(browser: &Browser, example: &str, verdict: &str) {
    select(browser, "#example", example).await;
    browser.css("#try-example").await.click().await.unwrap();
    browser
        .wait_for(
            &format!("document.querySelector('#verdict .label')?.textContent === '{verdict}'"),
            Duration::from_secs(30),
        )
        .await;
    expect_charts_drawn(browser, &CHARTS).await;
}

/// Opens the job page the form went to and returns the job's id.
async fn job_page(browser: &Browser) -> String {
    let hash = browser
        .wait_for("location.hash.match(/^#\\/jobs\\/[0-9a-f-]{36}$/) && location.hash", Duration::from_secs(20))
        .await;
    browser.wait_for("document.getElementById('job-status')", Duration::from_secs(20)).await;
    hash.as_str().unwrap().trim_start_matches("#/jobs/").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_diagnoses_models_and_jobs_in_a_real_browser() {
    let app = service().await;
    let files = tempfile::tempdir().unwrap();
    let (recording, label, wav) = held_out_recording(files.path());
    let browser = Browser::start(1280, 800).await;

    // Keyboard: the first Tab reaches the navigation, Enter follows it.
    browser.open(&app.url("/")).await;
    browser.wait_for("document.querySelector('#model option')", Duration::from_secs(20)).await;
    let body = browser.css("body").await;
    body.send_keys("\u{E004}").await.unwrap();
    assert_eq!(browser.eval("document.activeElement.id").await, "nav-diagnose");
    browser.client.active_element().await.unwrap().send_keys("\u{E004}").await.unwrap();
    assert_eq!(browser.eval("document.activeElement.id").await, "nav-models");
    browser.client.active_element().await.unwrap().send_keys("\u{E007}").await.unwrap();
    browser
        .wait_for(
            "location.hash === '#/models' && document.getElementById('main').dataset.ready === 'true'",
            Duration::from_secs(10),
        )
        .await;

    // Diagnose: a real recording, as a user picks it.
    browser.open(&app.url("/#/diagnose")).await;
    select(&browser, "#model", "cwru-bearing").await;
    browser.css("#file").await.send_keys(recording.to_str().unwrap()).await.unwrap();
    let shown =
        browser.wait_for("document.querySelector('#verdict .label')?.textContent", Duration::from_secs(30)).await;
    assert_eq!(shown, label.as_str());
    let api = ok(app.post_diagnose("?model=cwru-bearing&trace=true", "audio/wav", wav).await).await;
    assert_eq!(api["recording"]["label"], shown, "the page shows what the API answers");
    expect_charts_drawn(&browser, &CHARTS).await;
    let windows = api["windows"].as_array().unwrap().len() as u64;
    assert_eq!(browser.eval("document.querySelectorAll('#window option').length").await, windows);
    // The signal's outline: its min and max series, over the whole recording.
    let outline = api["trace"]["min"].as_array().unwrap().len() as u64;
    assert_eq!(browser.points("chart-signal").await, 2 * outline);
    let per_point = api["trace"]["samples_per_point"].as_u64().unwrap();
    assert!(per_point * outline >= api["recording"]["samples"].as_u64().unwrap() && outline <= 2000);
    // Another window's thresholds: one row per shrinkage block, the values the API gives.
    select(&browser, "#window", "3").await;
    let blocks = api["windows"][3]["blocks"].as_array().unwrap();
    let rows =
        browser.wait_for("document.querySelectorAll('#block-table tbody tr').length", Duration::from_secs(5)).await;
    assert_eq!(rows, blocks.len() as u64);
    let zeroed =
        browser.eval("document.querySelector('#block-table tbody tr:last-child td:last-child').textContent").await;
    assert_eq!(zeroed, format!("{:.1}%", 100.0 * blocks.last().unwrap()["zeroed_fraction"].as_f64().unwrap()));
    no_console_errors(&browser, "a diagnosis").await;

    // The example control: the outer-race snippet shipped in examples/.
    try_example(&browser, "/examples/outer-race-OR007.wav", "OR007@6").await;
    assert!(browser.eval("document.getElementById('physics').textContent").await.as_str().unwrap().contains("Physics"));
    no_console_errors(&browser, "an example").await;

    // A model's page: the confusion matrix holds the card's numbers.
    browser.open(&app.url("/#/models/cwru-bearing")).await;
    expect_charts_drawn(&browser, &["confusion", "chart-sweep", "chart-history"]).await;
    let card = app.get("/models/cwru-bearing").await;
    let expected: Vec<u64> = card["metrics"]["test"]["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .collect();
    let shown: Vec<u64> = serde_json::from_value(
        browser
            .eval("[...document.querySelectorAll('#confusion td[data-cell]')].map(td => Number(td.textContent))")
            .await,
    )
    .unwrap();
    assert_eq!(shown, expected);
    let recall_rows = browser.eval("document.querySelectorAll('#per-class tbody tr').length").await;
    assert_eq!(recall_rows, card["classes"].as_array().unwrap().len() as u64);
    no_console_errors(&browser, "the model page").await;

    // A job from the form: the token asked once, the curve gaining points as epochs end.
    browser.open(&app.url("/#/jobs")).await;
    set_field(&browser, "filter", "load_hp=0").await;
    set_field(&browser, "epochs", "8").await;
    set_field(&browser, "max_per_class", "150").await;
    select(&browser, "#job-form [name=promote]", "always").await;
    browser.css("#start-job").await.click().await.unwrap();
    give_token(&browser).await;
    let id = job_page(&browser).await;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let points = browser.points("chart-job").await;
        if seen.last() != Some(&points) {
            seen.push(points);
        }
        if browser.eval("document.getElementById('job-status').textContent").await == "succeeded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the job did not succeed in time; curve points seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every epoch drawn at the end (read back from the job if the stream missed one).
    browser
        .wait_for("Number(document.getElementById('chart-job').dataset.points) === 8 * 3", Duration::from_secs(10))
        .await;
    let growing: Vec<u64> = seen.iter().copied().filter(|&p| p > 0).collect();
    assert!(growing.len() >= 2 && growing.windows(2).all(|w| w[0] < w[1]), "curve points seen: {seen:?}");
    let job = app.get(&format!("/jobs/{id}")).await;
    assert_eq!(job["model_version"], 2);
    browser
        .wait_for("document.getElementById('job-outcome').textContent.includes('version 2')", Duration::from_secs(5))
        .await;

    // Another job, cancelled from its page (the token is remembered in the tab).
    browser.open(&app.url("/#/jobs")).await;
    set_field(&browser, "epochs", "500").await;
    select(&browser, "#job-form [name=promote]", "never").await;
    browser.css("#start-job").await.click().await.unwrap();
    let cancelled = job_page(&browser).await;
    browser.wait_for("document.getElementById('job-status').textContent === 'running'", Duration::from_secs(60)).await;
    browser.css("#cancel-job").await.click().await.unwrap();
    browser
        .wait_for("document.getElementById('job-status').textContent === 'cancelled'", Duration::from_secs(60))
        .await;
    assert_eq!(app.get(&format!("/jobs/{cancelled}")).await["status"], "cancelled");
    // The list filters by status.
    browser.open(&app.url("/#/jobs?status=cancelled")).await;
    let listed: Vec<String> = serde_json::from_value(
        browser.eval("[...document.querySelectorAll('#jobs tbody tr')].map(tr => tr.dataset.job)").await,
    )
    .unwrap();
    assert_eq!(listed, vec![cancelled]);
    no_console_errors(&browser, "the jobs").await;

    // A dataset from an archive of class folders: its counts per class.
    browser.open(&app.url("/#/datasets")).await;
    let archive = class_archive(files.path());
    browser.css("#dataset-name").await.send_keys("pump7").await.unwrap();
    browser.css("#dataset-archive").await.send_keys(archive.to_str().unwrap()).await.unwrap();
    browser.css("#upload").await.click().await.unwrap();
    browser.wait_for("document.querySelectorAll('#class-counts tbody tr').length === 2", Duration::from_secs(20)).await;
    let counts = browser.eval("[...document.querySelectorAll('#class-counts tbody tr')].map(tr => tr.dataset.class + '=' + tr.cells[1].textContent)").await;
    assert_eq!(counts, serde_json::json!(["inner_race=2", "outer_race=1"]));
    assert_eq!(app.get("/datasets/pump7").await["files"], 3);
    no_console_errors(&browser, "a dataset upload").await;

    // Roll back: version 1 into service again from the versions table.
    browser.open(&app.url("/#/models/cwru-bearing")).await;
    assert_eq!(browser.eval("document.querySelector('#versions tr.active').dataset.version").await, "2");
    browser.css("#versions tr[data-version='1'] button.activate").await.click().await.unwrap();
    browser
        .wait_for("document.querySelector('#versions tr.active')?.dataset.version === '1'", Duration::from_secs(20))
        .await;
    let models = app.get("/models").await;
    let bearing = models.as_array().unwrap().iter().find(|m| m["name"] == "cwru-bearing").unwrap();
    assert_eq!(bearing["version"], 1);
    no_console_errors(&browser, "an activation").await;

    // Tablet width: nothing wider than the screen, charts redrawn to fit.
    browser.client.set_window_size(820, 1180).await.unwrap();
    browser.open(&app.url("/#/diagnose")).await;
    try_example(&browser, "/examples/inner-race-IR007.wav", "IR007").await;
    let fits: Value = browser.eval("document.documentElement.scrollWidth <= window.innerWidth").await;
    assert_eq!(fits, true, "the diagnose page is wider than a tablet");
    no_console_errors(&browser, "the tablet width").await;
    browser.close().await;
}

/// Not a check: screenshots of every page for the README, with the page weight and the
/// time to the first chart. `scripts/screenshots.sh` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "makes the README's screenshots: scripts/screenshots.sh"]
async fn screenshots() {
    let out = std::env::var("DRSN_SCREENSHOTS").unwrap_or_else(|_| format!("{}/docs/img", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&out).unwrap();
    let out = Path::new(&out);
    let app = service().await;
    let browser = Browser::start(1280, 800).await;

    // Page weight and time to the first chart, on the models page (charts drawn on load).
    browser.open(&app.url("/#/models/cwru-bearing")).await;
    browser.wait_for("performance.getEntriesByName('first-chart').length", Duration::from_secs(20)).await;
    let figures = browser
        .eval(
            "{bytes: performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
                .filter(e => !e.name.includes('/models') && !e.name.includes('/examples'))
                .reduce((a, e) => a + e.decodedBodySize, 0),
              files: performance.getEntriesByType('resource').filter(e => e.name.includes('/ui/')).length + 1,
              first_chart_ms: performance.getEntriesByName('first-chart')[0].startTime,
              dom_content_loaded_ms: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd}",
        )
        .await;
    println!("dashboard: {figures}");
    std::fs::write(out.join("dashboard-figures.json"), serde_json::to_string_pretty(&figures).unwrap()).unwrap();
    browser.client.set_window_size(1280, 1400).await.unwrap();
    browser.open(&app.url("/#/models/cwru-bearing")).await;
    expect_charts_drawn(&browser, &["confusion", "chart-sweep", "chart-history"]).await;
    browser.screenshot(&out.join("dashboard-models.png")).await;

    browser.open(&app.url("/#/diagnose")).await;
    select(&browser, "#example", "/examples/outer-race-OR007.wav").await;
    let clicked = std::time::Instant::now();
    browser.css("#try-example").await.click().await.unwrap();
    expect_charts_drawn(&browser, &CHARTS).await;
    println!("diagnose: example to every chart drawn in {:?} (polled every 100 ms)", clicked.elapsed());
    browser.screenshot(&out.join("dashboard-diagnose.png")).await;
    browser.eval("document.getElementById('chart-blocks').scrollIntoView()").await;
    browser.screenshot(&out.join("dashboard-diagnose-blocks.png")).await;

    let id = app
        .submit_ok(&serde_json::json!({
            "model": "cwru-demo", "dataset": "cwru/manifest.csv",
            "data": {"sample_rate": 12000, "filter": {"load_hp": ["0"]}, "max_per_class": 200},
            "train": {"epochs": 40, "batch_size": 64}, "promote": "never"}))
        .await;
    browser.open(&app.url(&format!("/#/jobs/{id}"))).await;
    browser
        .wait_for("Number(document.getElementById('chart-job').dataset.points) >= 3 * 8", Duration::from_secs(300))
        .await;
    browser.screenshot(&out.join("dashboard-job.png")).await;
    app.post(&format!("/jobs/{id}/cancel")).send().await.unwrap();
    browser.open(&app.url("/#/jobs")).await;
    browser.screenshot(&out.join("dashboard-jobs.png")).await;
    browser.close().await;
}
