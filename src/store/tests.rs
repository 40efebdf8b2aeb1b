//! Store tests on a real SQLite file in a temporary folder.

use super::*;

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join(DB_FILE)).await.expect("open store");
    (dir, store)
}

fn job(id: &str, key: Option<&str>) -> NewJob {
    NewJob {
        id: id.into(),
        idempotency_key: key.map(Into::into),
        model_name: "cwru-bearing".into(),
        request: serde_json::json!({"model": "cwru-bearing", "epochs": 2}),
    }
}

#[tokio::test]
async fn a_job_moves_from_queued_to_succeeded_with_progress_and_epochs() {
    let (_dir, store) = open().await;
    let (row, created) = store.create_job(&job("a", None)).await.unwrap();
    assert!(created);
    assert_eq!(row.status, JobStatus::Queued);
    assert_eq!(row.request.0["epochs"], 2);
    let running = store.start_job("a").await.unwrap().expect("was queued");
    assert_eq!(running.status, JobStatus::Running);
    assert!(running.started_at.is_some());
    assert!(store.start_job("a").await.unwrap().is_none(), "a running job cannot start again");

    let p = JobProgress { epoch: 1, epochs: 2, step: 3, steps: 10, eta_seconds: Some(4.5) };
    store.update_progress("a", &p).await.unwrap();
    for epoch in 1..=2 {
        let e = EpochRow {
            job_id: "a".into(),
            epoch,
            loss: 1.0 / epoch as f64,
            train_accuracy: 0.5,
            val_accuracy: Some(0.6),
            lr: 1e-3,
            best: epoch == 2,
            elapsed_s: 2.0 * epoch as f64,
            recorded_at: chrono::Utc::now(),
        };
        store.record_epoch(&e).await.unwrap();
    }
    let done = store
        .finish_job("a", &JobOutcome::Succeeded { model_version: 3, result: serde_json::json!({"test_accuracy": 0.9}) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!((done.epoch, done.step, done.steps), (Some(1), Some(3), Some(10)));
    assert_eq!(done.model_version, Some(3));
    assert_eq!(done.result.as_ref().map(|r| r.0["test_accuracy"].clone()), Some(serde_json::json!(0.9)));
    assert!(done.finished_at.is_some() && done.error.is_none());
    let epochs = store.epochs("a").await.unwrap();
    assert_eq!(epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!((epochs[1].loss, epochs[1].best, epochs[0].best), (0.5, true, false));
    // A finished job ignores late progress and a second finish.
    store.update_progress("a", &JobProgress { epoch: 2, ..p }).await.unwrap();
    assert_eq!(store.job("a").await.unwrap().unwrap().epoch, Some(1));
    assert!(store.finish_job("a", &JobOutcome::Cancelled).await.unwrap().is_none());
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_job() {
    let (_dir, store) = open().await;
    let (first, created) = store.create_job(&job("a", Some("k1"))).await.unwrap();
    assert!(created);
    let (again, created) = store.create_job(&job("b", Some("k1"))).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    assert!(store.job("b").await.unwrap().is_none());
    let (_, created) = store.create_job(&job("c", Some("k2"))).await.unwrap();
    assert!(created);
    let (_, created) = store.create_job(&job("d", None)).await.unwrap();
    assert!(created, "jobs without a key never collide");
    let (_, created) = store.create_job(&job("e", None)).await.unwrap();
    assert!(created);
}

#[tokio::test]
async fn cancel_ends_a_queued_job_and_flags_a_running_one() {
    let (_dir, store) = open().await;
    store.create_job(&job("q", None)).await.unwrap();
    store.create_job(&job("r", None)).await.unwrap();
    store.start_job("r").await.unwrap().unwrap();
    match store.cancel_job("q").await.unwrap() {
        CancelOutcome::Cancelled(row) => assert_eq!(row.status, JobStatus::Cancelled),
        other => panic!("queued job: {other:?}"),
    }
    assert!(store.start_job("q").await.unwrap().is_none(), "a cancelled job never starts");
    match store.cancel_job("r").await.unwrap() {
        CancelOutcome::Requested(row) => {
            assert_eq!(row.status, JobStatus::Running);
            assert!(row.cancel_requested);
        }
        other => panic!("running job: {other:?}"),
    }
    store.finish_job("r", &JobOutcome::Cancelled).await.unwrap().unwrap();
    assert!(matches!(store.cancel_job("r").await.unwrap(), CancelOutcome::AlreadyFinished(_)));
    assert!(matches!(store.cancel_job("nope").await, Err(StoreError::NotFound(_))));
}

#[tokio::test]
async fn restart_settles_running_jobs_and_keeps_queued_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let store = Store::open(&path).await.unwrap();
        for id in ["done", "run", "run-cancel", "queued"] {
            store.create_job(&job(id, None)).await.unwrap();
        }
        for id in ["done", "run", "run-cancel"] {
            store.start_job(id).await.unwrap().unwrap();
        }
        store.finish_job("done", &JobOutcome::Failed("bad data".into())).await.unwrap();
        store.cancel_job("run-cancel").await.unwrap();
        store.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let mut settled = store.settle_interrupted().await.unwrap();
    settled.sort();
    assert_eq!(settled, vec!["run".to_string(), "run-cancel".to_string()]);
    let run = store.job("run").await.unwrap().unwrap();
    assert_eq!((run.status, run.error.as_deref()), (JobStatus::Failed, Some(INTERRUPTED)));
    assert_eq!(store.job("run-cancel").await.unwrap().unwrap().status, JobStatus::Cancelled);
    let done = store.job("done").await.unwrap().unwrap();
    assert_eq!((done.status, done.error.as_deref()), (JobStatus::Failed, Some("bad data")));
    assert_eq!(store.queued_job_ids().await.unwrap(), vec!["queued".to_string()]);
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn jobs_list_newest_first_filtered_and_paginated() {
    let (_dir, store) = open().await;
    for i in 0..5 {
        store.create_job(&job(&format!("j{i}"), None)).await.unwrap();
    }
    store.start_job("j1").await.unwrap();
    let (page, total) = store.list_jobs(None, 2, 0).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["j4", "j3"]);
    let (page, _) = store.list_jobs(None, 2, 4).await.unwrap();
    assert_eq!(page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["j0"]);
    let (running, total) = store.list_jobs(Some(JobStatus::Running), 10, 0).await.unwrap();
    assert_eq!((running.len(), total, running[0].id.as_str()), (1, 1, "j1"));
    assert_eq!(store.queued_job_ids().await.unwrap(), vec!["j0", "j2", "j3", "j4"]);
}

fn version(name: &str, v: i64) -> NewModelVersion {
    NewModelVersion {
        name: name.into(),
        version: v,
        path: format!("/models/{name}/{v}"),
        weights_sha256: "ab".repeat(32),
        metrics: serde_json::json!({"accuracy": 0.9 + v as f64 / 100.0}),
        job_id: None,
    }
}

#[tokio::test]
async fn one_version_per_name_is_active_and_activation_rolls_back_and_forward() {
    let (_dir, store) = open().await;
    for v in 1..=3 {
        store.insert_version(&version("m", v)).await.unwrap();
    }
    store.insert_version(&version("other", 1)).await.unwrap();
    assert!(matches!(store.insert_version(&version("m", 2)).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.ensure_version(&version("m", 2)).await.unwrap().version, 2);
    assert_eq!(store.max_version("m").await.unwrap(), 3);
    assert_eq!(store.max_version("none").await.unwrap(), 0);
    assert!(store.active_version("m").await.unwrap().is_none());

    store.activate("m", 3).await.unwrap();
    store.activate("other", 1).await.unwrap();
    let back = store.activate("m", 1).await.unwrap();
    assert!(back.active && back.activated_at.is_some());
    let active: Vec<_> =
        store.versions("m").await.unwrap().into_iter().filter(|v| v.active).map(|v| v.version).collect();
    assert_eq!(active, vec![1]);
    assert_eq!(store.active_versions().await.unwrap().len(), 2);
    assert!(matches!(store.activate("m", 9).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.active_version("m").await.unwrap().unwrap().version, 1, "a failed activation changes nothing");
    // The schema itself refuses a second active version.
    let second = sqlx::query("UPDATE model_versions SET active = 1 WHERE name = 'm' AND version = 2")
        .execute(store.pool())
        .await;
    assert!(second.is_err());
}

#[tokio::test]
async fn datasets_count_files_per_class() {
    let (_dir, store) = open().await;
    let f = |label: &str, file: &str, bytes| NewDatasetFile {
        label: label.into(),
        file: file.into(),
        bytes,
        kind: "wav".into(),
        sha256: "00".into(),
    };
    store.add_dataset_files("d", &[f("normal", "a.wav", 10), f("normal", "b.wav", 20)]).await.unwrap();
    store.add_dataset_files("d", &[f("ball", "a.wav", 5), f("normal", "b.wav", 30)]).await.unwrap();
    let classes = store.dataset_classes("d").await.unwrap();
    assert_eq!(
        classes,
        vec![
            ClassCount { label: "ball".into(), files: 1, bytes: 5 },
            ClassCount { label: "normal".into(), files: 2, bytes: 40 },
        ]
    );
    let summary = store.dataset("d").await.unwrap().unwrap();
    assert_eq!((summary.files, summary.bytes), (3, 45));
    assert_eq!(store.list_datasets().await.unwrap().len(), 1);
    assert!(store.dataset("e").await.unwrap().is_none());
    assert_eq!(store.dataset_files("d").await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_job_publishing_its_version_refuses_a_cancel_and_a_cancel_first_stops_publishing() {
    let (_dir, store) = open().await;
    for id in ["p", "c", "q"] {
        store.create_job(&job(id, None)).await.unwrap();
        store.start_job(id).await.unwrap().unwrap();
    }
    assert!(store.begin_publishing("p").await.unwrap());
    match store.cancel_job("p").await.unwrap() {
        CancelOutcome::Publishing(row) => assert!(row.publishing && !row.cancel_requested),
        other => panic!("publishing job: {other:?}"),
    }
    assert!(matches!(store.cancel_job("c").await.unwrap(), CancelOutcome::Requested(_)));
    assert!(!store.begin_publishing("c").await.unwrap(), "the cancel came first: no version");
    // A queued job that cannot be started is failed with the reason, once.
    store.create_job(&job("s", None)).await.unwrap();
    let failed = store.fail_queued("s", "the job could not be started").await.unwrap().unwrap();
    assert_eq!((failed.status, failed.error.as_deref()), (JobStatus::Failed, Some("the job could not be started")));
    assert!(store.fail_queued("s", "again").await.unwrap().is_none());
}
