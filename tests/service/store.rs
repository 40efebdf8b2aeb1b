//! The store on both databases: every test runs on a SQLite file and on a throw-away
//! PostgreSQL server, with the same assertions. Replicas are modelled by several stores
//! (pools) on one database, claiming, renewing and reserving at once.

use std::collections::BTreeSet;
use std::time::Duration;

use drsn::store::{
    CancelOutcome, ClassCount, EpochRow, JobOutcome, JobProgress, JobStatus, Lease, Location, ModelFiles,
    NewDatasetFile, NewJob, NewModelVersion, Orphans, Store, StoreError, DB_FILE, INTERRUPTED, LEASE_EXPIRED,
};

use crate::common::postgres;

/// A database for one test; `open` connects another store (a restart, or a replica).
struct Db {
    location: Location,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        Db { location: Location::Sqlite(dir.path().join(DB_FILE)), _dir: Some(dir) }
    }

    async fn postgres() -> Db {
        let url = postgres::server().fresh_database().await;
        Db { location: Location::Postgres(url), _dir: None }
    }

    async fn open(&self) -> Store {
        Store::connect(&self.location).await.expect("open the store")
    }
}

/// One test body, run once per database.
macro_rules! on_both {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $db = Db::sqlite().await;
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let $db = Db::postgres().await;
                $body
            }
        }
    };
}

fn job(id: &str, key: Option<&str>) -> NewJob {
    NewJob {
        id: id.into(),
        idempotency_key: key.map(Into::into),
        model_name: "cwru-bearing".into(),
        request: serde_json::json!({"model": "cwru-bearing", "epochs": 2}),
    }
}

fn lease(owner: &str) -> Lease {
    Lease { owner: owner.into(), duration: Duration::from_secs(30) }
}

/// Creates the jobs (in this order, a moment apart) and claims the first `claimed` of them.
async fn jobs(store: &Store, ids: &[&str], claimed: usize) {
    for id in ids {
        store.create_job(&job(id, None)).await.unwrap();
    }
    for id in &ids[..claimed] {
        let row = store.claim_next(&lease("r1")).await.unwrap().expect("a queued job");
        assert_eq!(&row.id, id, "jobs are claimed oldest first");
    }
}

on_both!(a_job_moves_from_queued_to_succeeded_with_progress_and_epochs, |db| {
    let store = db.open().await;
    let (row, created) = store.create_job(&job("a", None)).await.unwrap();
    assert!(created);
    assert_eq!(row.status, JobStatus::Queued);
    assert_eq!(row.request.0["epochs"], 2);
    let running = store.claim_next(&lease("r1")).await.unwrap().expect("was queued");
    assert_eq!((running.id.as_str(), running.status), ("a", JobStatus::Running));
    assert_eq!(running.owner.as_deref(), Some("r1"));
    assert!(running.started_at.is_some() && running.lease_until > running.started_at);
    assert!(store.claim_next(&lease("r2")).await.unwrap().is_none(), "a running job is not claimed again");

    let p = JobProgress { epoch: 1, epochs: 2, step: 3, steps: 10, eta_seconds: Some(4.5) };
    store.update_progress("a", "r1", &p).await.unwrap();
    store.update_progress("a", "r2", &JobProgress { epoch: 2, ..p }).await.unwrap();
    assert_eq!(store.job("a").await.unwrap().unwrap().epoch, Some(1), "only the owner records progress");
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
        store.record_epoch(&e).await.unwrap();
    }
    let outcome = JobOutcome::Succeeded { model_version: 3, result: serde_json::json!({"test_accuracy": 0.9}) };
    assert!(store.finish_job("a", "r2", &outcome).await.unwrap().is_none(), "only the owner finishes it");
    let done = store.finish_job("a", "r1", &outcome).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!((done.epoch, done.step, done.steps), (Some(1), Some(3), Some(10)));
    assert_eq!(done.model_version, Some(3));
    assert_eq!(done.result.as_ref().map(|r| r.0["test_accuracy"].clone()), Some(serde_json::json!(0.9)));
    assert!(done.finished_at.is_some() && done.error.is_none() && done.lease_until.is_none());
    assert_eq!(done.owner.as_deref(), Some("r1"), "the job keeps the name of the replica that ran it");
    let epochs = store.epochs("a").await.unwrap();
    assert_eq!(epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!((epochs[1].loss, epochs[1].best, epochs[0].best), (0.5, true, false));
    // A finished job ignores late progress and a second finish.
    store.update_progress("a", "r1", &JobProgress { epoch: 2, ..p }).await.unwrap();
    assert_eq!(store.job("a").await.unwrap().unwrap().epoch, Some(1));
    assert!(store.finish_job("a", "r1", &JobOutcome::Cancelled).await.unwrap().is_none());
});

on_both!(a_repeated_idempotency_key_returns_the_first_job, |db| {
    let store = db.open().await;
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
});

on_both!(cancel_ends_a_queued_job_and_flags_a_running_one, |db| {
    let store = db.open().await;
    jobs(&store, &["r", "q"], 1).await;
    match store.cancel_job("q").await.unwrap() {
        CancelOutcome::Cancelled(row) => assert_eq!(row.status, JobStatus::Cancelled),
        other => panic!("queued job: {other:?}"),
    }
    assert!(store.claim_next(&lease("r1")).await.unwrap().is_none(), "a cancelled job is never claimed");
    match store.cancel_job("r").await.unwrap() {
        CancelOutcome::Requested(row) => {
            assert_eq!(row.status, JobStatus::Running);
            assert!(row.cancel_requested);
        }
        other => panic!("running job: {other:?}"),
    }
    // The owner's heartbeat learns of it.
    assert_eq!(store.renew_leases(&lease("r1"), &["r".to_string()]).await.unwrap(), vec![("r".to_string(), true)]);
    store.finish_job("r", "r1", &JobOutcome::Cancelled).await.unwrap().unwrap();
    assert!(matches!(store.cancel_job("r").await.unwrap(), CancelOutcome::AlreadyFinished(_)));
    assert!(matches!(store.cancel_job("nope").await, Err(StoreError::NotFound(_))));
});

on_both!(restart_settles_running_jobs_and_keeps_queued_ones, |db| {
    {
        let store = db.open().await;
        jobs(&store, &["done", "run", "run-cancel", "queued"], 3).await;
        store.finish_job("done", "r1", &JobOutcome::Failed("bad data".into())).await.unwrap();
        store.cancel_job("run-cancel").await.unwrap();
        store.close().await;
    }
    let store = db.open().await;
    let mut settled: Vec<String> = store.settle(Orphans::All).await.unwrap().into_iter().map(|r| r.id).collect();
    settled.sort();
    assert_eq!(settled, vec!["run".to_string(), "run-cancel".to_string()]);
    let run = store.job("run").await.unwrap().unwrap();
    assert_eq!((run.status, run.error.as_deref()), (JobStatus::Failed, Some(INTERRUPTED)));
    assert_eq!(store.job("run-cancel").await.unwrap().unwrap().status, JobStatus::Cancelled);
    let done = store.job("done").await.unwrap().unwrap();
    assert_eq!((done.status, done.error.as_deref()), (JobStatus::Failed, Some("bad data")));
    assert_eq!(store.queued_jobs().await.unwrap(), 1);
    assert_eq!(store.claim_next(&lease("r2")).await.unwrap().map(|r| r.id), Some("queued".into()));
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
});

on_both!(jobs_list_newest_first_filtered_and_paginated, |db| {
    let store = db.open().await;
    jobs(&store, &["j0", "j1", "j2", "j3", "j4"], 1).await;
    let (page, total) = store.list_jobs(None, 2, 0).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["j4", "j3"]);
    let (page, _) = store.list_jobs(None, 2, 4).await.unwrap();
    assert_eq!(page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["j0"]);
    let (running, total) = store.list_jobs(Some(JobStatus::Running), 10, 0).await.unwrap();
    assert_eq!((running.len(), total, running[0].id.as_str()), (1, 1, "j0"));
    let (queued, total) = store.list_jobs(Some(JobStatus::Queued), 10, 0).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(queued.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["j4", "j3", "j2", "j1"]);
});

on_both!(replicas_claiming_at_once_each_get_a_different_job_and_every_job_runs_once, |db| {
    let replicas = [db.open().await, db.open().await, db.open().await];
    let ids: Vec<String> = (0..30).map(|i| format!("j{i:02}")).collect();
    for id in &ids {
        replicas[0].create_job(&job(id, None)).await.unwrap();
    }
    // Four workers per replica, all claiming until the queue is empty.
    let mut workers = tokio::task::JoinSet::new();
    for (r, store) in replicas.iter().enumerate() {
        for w in 0..4 {
            let (store, owner) = (store.clone(), format!("replica{r}-{w}"));
            workers.spawn(async move {
                let mut got = Vec::new();
                while let Some(row) = store.claim_next(&lease(&owner)).await.unwrap() {
                    assert_eq!(row.owner.as_deref(), Some(owner.as_str()));
                    got.push(row.id);
                }
                got
            });
        }
    }
    let mut claimed = Vec::new();
    while let Some(got) = workers.join_next().await {
        claimed.extend(got.unwrap());
    }
    claimed.sort();
    assert_eq!(claimed, ids, "every job claimed exactly once");
});

on_both!(a_dead_replicas_jobs_are_settled_when_its_lease_expires_and_a_live_one_keeps_its_own, |db| {
    let (live, dead) = (db.open().await, db.open().await);
    jobs(&live, &["held", "orphan", "orphan-cancel"], 0).await;
    let (steady, short) = (Lease { owner: "live".into(), duration: Duration::from_secs(30) }, |owner: &str| Lease {
        owner: owner.into(),
        duration: Duration::from_millis(1500),
    });
    assert_eq!(live.claim_next(&steady).await.unwrap().unwrap().id, "held");
    assert_eq!(dead.claim_next(&short("dead")).await.unwrap().unwrap().id, "orphan");
    assert_eq!(dead.claim_next(&short("dead")).await.unwrap().unwrap().id, "orphan-cancel");
    live.cancel_job("orphan-cancel").await.unwrap();
    assert!(live.settle(Orphans::Expired).await.unwrap().is_empty(), "no lease has expired yet");
    // The live replica beats; the dead one does not.
    let held = vec!["held".to_string()];
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(live.renew_leases(&steady, &held).await.unwrap(), vec![("held".to_string(), false)]);
    }
    // A replica renews only the jobs it holds, whatever else its name is on.
    assert!(live.renew_leases(&short("dead"), &[]).await.unwrap().is_empty());
    let mut settled = live.settle(Orphans::Expired).await.unwrap();
    settled.sort_by(|a, b| a.id.cmp(&b.id));
    let got: Vec<_> = settled.iter().map(|r| (r.id.as_str(), r.status, r.error.as_deref())).collect();
    assert_eq!(
        got,
        vec![("orphan", JobStatus::Failed, Some(LEASE_EXPIRED)), ("orphan-cancel", JobStatus::Cancelled, None)]
    );
    assert!(live.settle(Orphans::Expired).await.unwrap().is_empty(), "settled once");
    assert_eq!(live.job("held").await.unwrap().unwrap().status, JobStatus::Running);
    // The dead replica, back, holds nothing: its outcome is dropped.
    let orphans = vec!["orphan".to_string(), "orphan-cancel".to_string()];
    assert!(dead.renew_leases(&short("dead"), &orphans).await.unwrap().is_empty());
    assert!(dead.finish_job("orphan", "dead", &JobOutcome::Cancelled).await.unwrap().is_none());
    // A restarted process with the live replica's name settles what its predecessor held.
    let restarted = db.open().await;
    let ended = restarted.settle(Orphans::OwnedBy("live")).await.unwrap();
    assert_eq!(
        ended.iter().map(|r| (r.id.as_str(), r.error.as_deref())).collect::<Vec<_>>(),
        vec![("held", Some(INTERRUPTED))]
    );
});

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

on_both!(one_version_per_name_is_active_and_activation_rolls_back_and_forward, |db| {
    let store = db.open().await;
    for v in 1..=3 {
        store.insert_version(&version("m", v), None).await.unwrap();
    }
    store.insert_version(&version("other", 1), None).await.unwrap();
    assert!(matches!(store.insert_version(&version("m", 2), None).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.ensure_version(&version("m", 2)).await.unwrap().version, 2);
    assert!(store.active_version("m").await.unwrap().is_none());

    store.activate("m", 3).await.unwrap();
    store.activate("other", 1).await.unwrap();
    let back = store.activate("m", 1).await.unwrap();
    assert!(back.active && back.activated_at.is_some());
    let active: Vec<_> =
        store.versions("m").await.unwrap().into_iter().filter(|v| v.active).map(|v| v.version).collect();
    assert_eq!(active, vec![1]);
    assert_eq!(store.active_versions().await.unwrap().len(), 2);
    assert_eq!(store.all_versions().await.unwrap().len(), 4);
    assert!(matches!(store.activate("m", 9).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.active_version("m").await.unwrap().unwrap().version, 1, "a failed activation changes nothing");
});

on_both!(activations_from_many_replicas_at_once_leave_exactly_one_active_version, |db| {
    let store = db.open().await;
    for v in 1..=6 {
        store.insert_version(&version("m", v), None).await.unwrap();
    }
    let replicas = [store.clone(), db.open().await, db.open().await];
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..4 {
        for (r, replica) in replicas.iter().enumerate() {
            let replica = replica.clone();
            let v = (round * 3 + r) as i64 % 6 + 1;
            tasks.spawn(async move { replica.activate("m", v).await.map(|row| row.version) });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("every activation succeeds, one after the other");
    }
    let active: Vec<_> = store.versions("m").await.unwrap().into_iter().filter(|v| v.active).collect();
    assert_eq!(active.len(), 1, "exactly one active version");
});

on_both!(version_numbers_are_never_handed_out_twice_and_files_travel_with_their_version, |db| {
    let store = db.open().await;
    store.insert_version(&version("m", 1), None).await.unwrap();
    let replicas = [store.clone(), db.open().await, db.open().await];
    let mut tasks = tokio::task::JoinSet::new();
    for replica in &replicas {
        for _ in 0..5 {
            let replica = replica.clone();
            tasks.spawn(async move { replica.reserve_version("m", 1).await.unwrap() });
        }
    }
    let mut numbers = BTreeSet::new();
    while let Some(n) = tasks.join_next().await {
        assert!(numbers.insert(n.unwrap()), "a number handed out twice");
    }
    assert_eq!(numbers, (2..=16).collect(), "the next numbers after the recorded version 1, none skipped");
    assert_eq!(store.reserve_version("m", 40).await.unwrap(), 40, "at least the registry's next number");
    assert_eq!(store.reserve_version("new", 1).await.unwrap(), 1);

    let files = ModelFiles { card: b"{\"name\":\"m\"}".to_vec(), weights: vec![0, 1, 2, 255] };
    store.insert_version(&version("m", 2), Some(&files)).await.unwrap();
    assert_eq!(replicas[2].version_files("m", 2).await.unwrap(), Some(files));
    assert_eq!(store.version_files("m", 1).await.unwrap(), None);
    store.delete_version("m", 2).await.unwrap();
    assert_eq!(store.version_files("m", 2).await.unwrap(), None, "files go with their version");
});

on_both!(datasets_count_files_per_class, |db| {
    let store = db.open().await;
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
});

on_both!(a_job_publishing_its_version_refuses_a_cancel_and_a_cancel_first_stops_publishing, |db| {
    let store = db.open().await;
    jobs(&store, &["p", "c"], 2).await;
    assert!(!store.begin_publishing("p", "r2").await.unwrap(), "only the owner publishes");
    assert!(store.begin_publishing("p", "r1").await.unwrap());
    match store.cancel_job("p").await.unwrap() {
        CancelOutcome::Publishing(row) => assert!(row.publishing && !row.cancel_requested),
        other => panic!("publishing job: {other:?}"),
    }
    assert!(matches!(store.cancel_job("c").await.unwrap(), CancelOutcome::Requested(_)));
    assert!(!store.begin_publishing("c", "r1").await.unwrap(), "the cancel came first: no version");
});

#[tokio::test]
async fn notifications_reach_every_listener_on_postgres_and_sqlite_has_none() {
    let db = Db::postgres().await;
    let (a, b) = (db.open().await, db.open().await);
    let mut heard = b.listen().await.unwrap().expect("PostgreSQL listens");
    a.notify(drsn::store::Channel::Versions, "cwru-bearing").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), heard.next()).await.expect("heard within 10 s").unwrap();
    assert_eq!(got, (drsn::store::Channel::Versions, "cwru-bearing".to_string()));
    assert!(a.is_shared());

    let lite = Db::sqlite().await.open().await;
    assert!(!lite.is_shared());
    assert!(lite.listen().await.unwrap().is_none());
    lite.notify(drsn::store::Channel::Versions, "x").await.unwrap();
}
