//! The job store's guarantees, against a real `redis-server` or (with
//! `STORYFORGE_TEST_STORE=sqlite`) a real SQLite file: one claim wins, a result is written only
//! under a held lease, attempts are counted and capped, and the reconciler recovers what crashed
//! workers and lost tickets leave behind.

use std::sync::Arc;
use std::time::Duration;

use storyforge_domain::job::{JobError, JobSpec, JobStatus, Stage};
use storyforge_store::redis::{RedisJobStore, connect};
use storyforge_store::sqlite::SqliteJobStore;
use storyforge_store::{
    ApiStore, AttemptReport, CancelOutcome, Claim, DeliveryNext, DeliveryOutcome, JobStore,
    LeaseState, ListQuery, RunNext, StoreError, StorePolicy, Subject, Ticket, Work, WorkKind,
    WorkerStore,
};
use storyforge_tests::app::TestStore;
use storyforge_tests::redis_server::{RedisServer, unique_namespace};

fn spec(story: &str) -> JobSpec {
    serde_json::from_value(serde_json::json!({ "story": story })).unwrap()
}

async fn store_with(policy: StorePolicy) -> Arc<dyn JobStore> {
    match TestStore::current() {
        TestStore::Redis => {
            let conn = connect(&RedisServer::shared().url()).await.unwrap();
            Arc::new(RedisJobStore::new(conn, unique_namespace("store"), policy))
        }
        TestStore::Sqlite => {
            // Kept after the test, like the Redis namespaces: small, and useful when one fails.
            let dir = tempfile::Builder::new()
                .prefix("sf-store-")
                .tempdir()
                .unwrap()
                .keep();
            Arc::new(SqliteJobStore::open(&dir, policy).await.unwrap())
        }
    }
}

fn policy(lease: Duration, max_attempts: u32) -> StorePolicy {
    StorePolicy {
        job_ttl: Duration::from_secs(3600),
        max_attempts,
        lease_ttl: lease,
        dispatch_timeout: Duration::from_millis(300),
    }
}

async fn store() -> Arc<dyn JobStore> {
    store_with(policy(Duration::from_secs(30), 3)).await
}

async fn claim(store: &Arc<dyn JobStore>, job_id: uuid::Uuid, worker: &str) -> Claim {
    store
        .claim(&Ticket::generation(job_id), worker)
        .await
        .unwrap()
}

fn granted(claim: Claim) -> storyforge_store::Lease {
    match claim {
        Claim::Granted(lease) => *lease,
        other => panic!("expected a granted claim, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_job_is_queued_and_due() {
    let store = store().await;
    let job = store
        .create(&spec("As a user, I want X"), None)
        .await
        .unwrap()
        .job;
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.stage, Stage::Queued);
    assert_eq!(job.attempts, 0);
    let due = store.take_due(10, 100).await.unwrap();
    assert_eq!(due, vec![Ticket::generation(job.id)]);
    assert!(
        store.take_due(10, 100).await.unwrap().is_empty(),
        "a dispatched job is not due twice"
    );
}

#[tokio::test]
async fn only_one_of_two_racing_claims_wins() {
    let store = store().await;
    let job = store.create(&spec("story"), None).await.unwrap().job;
    let (a, b) = tokio::join!(claim(&store, job.id, "a"), claim(&store, job.id, "b"));
    let wins = [&a, &b]
        .iter()
        .filter(|c| matches!(c, Claim::Granted(_)))
        .count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
    let job = store.get(job.id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Running, 1));
}

#[tokio::test]
async fn a_result_is_written_only_while_the_lease_holds() {
    let store = store_with(policy(Duration::from_millis(300), 3)).await;
    let job = store.create(&spec("story"), None).await.unwrap().job;
    let stalled = granted(claim(&store, job.id, "stalled").await);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let report = store.reconcile().await.unwrap();
    assert_eq!(report.expired_leases_requeued, 1);
    let rescuer = granted(claim(&store, job.id, "rescuer").await);
    assert_eq!(rescuer.attempt, 2, "the lost delivery counts as an attempt");

    let late = store
        .fail(&stalled, &JobError::new("late", "too late"))
        .await
        .unwrap();
    assert_eq!(
        late,
        LeaseState::Lost,
        "the stalled worker's write is refused"
    );
    assert_eq!(store.touch(&stalled, None).await.unwrap(), LeaseState::Lost);
    let error = JobError::new("x", "y");
    assert_eq!(
        store.fail(&rescuer, &error).await.unwrap(),
        LeaseState::Held
    );
    assert_eq!(
        store.fail(&rescuer, &error).await.unwrap(),
        LeaseState::Lost,
        "a result is written once"
    );
    let job = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code, "x");
}

#[tokio::test]
async fn expired_leases_fail_the_job_once_attempts_are_used_up() {
    let store = store_with(policy(Duration::from_millis(300), 2)).await;
    let job = store.create(&spec("story"), None).await.unwrap().job;
    for _ in 0..2 {
        granted(claim(&store, job.id, "crashy").await);
        tokio::time::sleep(Duration::from_millis(400)).await;
        store.reconcile().await.unwrap();
    }
    let job = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts, 2);
    let error = job.error.unwrap();
    assert_eq!(error.code, "worker_lost");
    assert!(error.message.contains("attempts used"), "{}", error.message);
}

#[tokio::test]
async fn retries_wait_for_their_delay_and_stop_at_the_attempt_cap() {
    let store = store_with(policy(Duration::from_secs(30), 2)).await;
    let job = store.create(&spec("story"), None).await.unwrap().job;
    let lease = granted(claim(&store, job.id, "w").await);
    let error = JobError::new("llm_timeout", "the LLM provider did not answer in time");
    assert_eq!(
        store
            .retry_later(&lease, Duration::from_millis(300), &error)
            .await
            .unwrap(),
        LeaseState::Held
    );
    assert!(
        matches!(claim(&store, job.id, "w").await, Claim::Stale),
        "not due before its delay"
    );
    assert!(store.take_due(10, 100).await.unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(store.take_due(10, 100).await.unwrap().len(), 1);
    let lease = granted(claim(&store, job.id, "w").await);
    assert_eq!(lease.attempt, 2);
    assert_eq!(
        store
            .retry_later(&lease, Duration::ZERO, &error)
            .await
            .unwrap(),
        LeaseState::Held,
        "the final failure is written"
    );
    let job = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap();
    assert_eq!(error.code, "llm_timeout");
    assert!(
        error.message.contains("gave up after 2 attempts"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_handed_back_job_is_due_at_once_and_keeps_its_attempts() {
    let store = store().await;
    let job = store.create(&spec("story"), None).await.unwrap().job;
    let lease = granted(claim(&store, job.id, "stopping").await);
    assert_eq!(store.hand_back(&lease).await.unwrap(), LeaseState::Held);
    let job = store.get(job.id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0));
    assert_eq!(granted(claim(&store, job.id, "next").await).attempt, 1);
}

#[tokio::test]
async fn canceling_stops_queued_and_running_jobs_but_not_finished_ones() {
    let store = store().await;
    let queued = store.create(&spec("queued"), None).await.unwrap().job;
    assert!(
        matches!(store.cancel(queued.id).await.unwrap(), CancelOutcome::Canceled(j) if j.status == JobStatus::Canceled)
    );
    assert!(matches!(claim(&store, queued.id, "w").await, Claim::Stale));
    assert!(matches!(
        store.cancel(queued.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(_)
    ));

    let running = store.create(&spec("running"), None).await.unwrap().job;
    let lease = granted(claim(&store, running.id, "w").await);
    assert!(matches!(
        store.cancel(running.id).await.unwrap(),
        CancelOutcome::Canceled(_)
    ));
    assert_eq!(
        store.touch(&lease, None).await.unwrap(),
        LeaseState::Canceled
    );
    assert_eq!(
        store.fail(&lease, &JobError::new("a", "b")).await.unwrap(),
        LeaseState::Canceled
    );
    assert!(matches!(
        store.cancel(uuid::Uuid::now_v7()).await.unwrap(),
        CancelOutcome::NotFound
    ));
}

#[tokio::test]
async fn idempotency_keys_replay_the_same_body_and_refuse_another() {
    let store = store().await;
    let first = store
        .create(&spec("story"), Some(("key-1", "hash-a")))
        .await
        .unwrap();
    let again = store
        .create(&spec("story"), Some(("key-1", "hash-a")))
        .await
        .unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.job.id, again.job.id);
    let conflict = store
        .create(&spec("other"), Some(("key-1", "hash-b")))
        .await;
    assert!(
        matches!(conflict, Err(StoreError::IdempotencyConflict { .. })),
        "{conflict:?}"
    );
}

#[tokio::test]
async fn unclaimed_dispatches_are_dispatched_again() {
    let store = store().await;
    let job = store.create(&spec("story"), None).await.unwrap().job;
    assert_eq!(store.take_due(10, 100).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(store.reconcile().await.unwrap().redispatched, 1);
    assert_eq!(
        store.take_due(10, 100).await.unwrap(),
        vec![Ticket::generation(job.id)]
    );
}

#[tokio::test]
async fn the_dispatch_window_bounds_outstanding_tickets_by_live_capacity() {
    let store = store().await;
    for i in 0..100 {
        store
            .create(&spec(&format!("story {i}")), None)
            .await
            .unwrap();
    }
    assert_eq!(
        store.take_due(1000, 1000).await.unwrap().len(),
        16,
        "no live worker: a window of 16"
    );
    store.heartbeat("w1", 20).await.unwrap();
    assert_eq!(
        store.take_due(1000, 1000).await.unwrap().len(),
        40 - 16,
        "twice the live capacity"
    );
    assert!(store.take_due(1000, 1000).await.unwrap().is_empty());
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.queue_depth, 100);
    assert_eq!(stats.live_workers, vec!["w1".to_string()]);
    assert_eq!(stats.by_status["queued"], 100);
}

#[tokio::test]
async fn listing_pages_newest_first_with_a_status_filter() {
    let store = store().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            store
                .create(&spec(&format!("story {i}")), None)
                .await
                .unwrap()
                .job
                .id,
        );
    }
    store.cancel(ids[1]).await.unwrap();
    let first = store
        .list(&ListQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let second = store
        .list(&ListQuery {
            limit: 2,
            cursor: first.next_cursor,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        second.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let third = store
        .list(&ListQuery {
            limit: 2,
            cursor: second.next_cursor,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(third.items.len(), 1);
    assert_eq!(third.next_cursor, None);
    let canceled = store
        .list(&ListQuery {
            limit: 10,
            status: Some(JobStatus::Canceled),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        canceled.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
}

#[tokio::test]
async fn finished_jobs_expire_and_leave_the_indexes() {
    let store = store_with(StorePolicy {
        job_ttl: Duration::from_millis(200),
        ..policy(Duration::from_secs(30), 3)
    })
    .await;
    let job = store.create(&spec("story"), None).await.unwrap().job;
    store.cancel(job.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.get(job.id).await.unwrap().is_none());
    assert_eq!(store.reconcile().await.unwrap().pruned, 1);
    assert_eq!(store.stats().await.unwrap().by_status["canceled"], 0);
}

fn spec_with_webhook(story: &str) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "story": story,
        "webhook": {"url": "https://hooks.example.com/sf", "secret": "whsec_c2VjcmV0"}
    }))
    .unwrap()
}

fn delivery_of(lease: &storyforge_store::Lease) -> &storyforge_store::Delivery {
    match &lease.work {
        Work::WebhookDelivery(delivery) => delivery,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn a_finished_job_with_a_webhook_has_its_event_due_in_the_same_step() {
    let store = store().await;
    let job = store
        .create(&spec_with_webhook("story"), None)
        .await
        .unwrap()
        .job;
    assert_eq!(
        store.take_due(10, 100).await.unwrap(),
        vec![Ticket::generation(job.id)]
    );
    let lease = granted(claim(&store, job.id, "w").await);
    let error = JobError::new("refusal", "the model refused");
    assert_eq!(store.fail(&lease, &error).await.unwrap(), LeaseState::Held);

    // Nothing else ran between the commit and this read: the event was written with the result.
    let due = store.take_due(10, 100).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].kind, WorkKind::WebhookDelivery);
    let lease = granted(store.claim(&due[0], "w").await.unwrap());
    let delivery = delivery_of(&lease);
    assert_eq!(delivery.event_type, "job.failed");
    assert_eq!(delivery.subject, Subject::Job(job.id));
    assert_eq!(
        delivery.target.as_ref().unwrap().secret.as_deref(),
        Some("whsec_c2VjcmV0"),
        "the worker gets the secret to sign with"
    );
    assert_eq!(delivery.data.as_ref().unwrap()["status"], "failed");
}

#[tokio::test]
async fn a_delivery_whose_worker_crashed_is_taken_again_with_the_same_event_id() {
    let store = store_with(policy(Duration::from_millis(300), 3)).await;
    let job = store
        .create(&spec_with_webhook("story"), None)
        .await
        .unwrap()
        .job;
    store.take_due(10, 100).await.unwrap();
    let lease = granted(claim(&store, job.id, "w").await);
    store.fail(&lease, &JobError::new("x", "y")).await.unwrap();
    let ticket = store.take_due(10, 100).await.unwrap().remove(0);
    let crashed = granted(store.claim(&ticket, "crashed").await.unwrap());

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.reconcile().await.unwrap().expired_leases_requeued, 1);
    let rescuer = granted(store.claim(&ticket, "rescuer").await.unwrap());
    assert_eq!(rescuer.attempt, 2);
    assert_eq!(
        delivery_of(&rescuer).event_id,
        delivery_of(&crashed).event_id
    );

    let report = AttemptReport {
        status_code: Some(200),
        error: None,
    };
    assert_eq!(
        store
            .record_delivery(&crashed, &report, DeliveryNext::Delivered)
            .await
            .unwrap(),
        LeaseState::Lost,
        "the crashed worker's late write is refused"
    );
    assert_eq!(
        store
            .record_delivery(&rescuer, &report, DeliveryNext::Delivered)
            .await
            .unwrap(),
        LeaseState::Held
    );
    let attempts = store
        .deliveries(Subject::Job(job.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempts.len(), 1, "one attempt recorded: {attempts:?}");
    assert_eq!(
        (attempts[0].attempt, attempts[0].outcome),
        (2, DeliveryOutcome::Delivered)
    );
    assert!(
        store.take_due(10, 100).await.unwrap().is_empty(),
        "delivered once"
    );
}

#[tokio::test]
async fn work_queued_by_the_earlier_redis_key_layout_is_taken_over_on_upgrade() {
    let namespace = unique_namespace("store-upgrade");
    let mut conn = connect(&RedisServer::shared().url()).await.unwrap();
    let store = RedisJobStore::new(
        conn.clone(),
        namespace.clone(),
        policy(Duration::from_secs(30), 3),
    );
    let job = store
        .create(&spec("queued before the upgrade"), None)
        .await
        .unwrap()
        .job;
    // What an older version left behind: the job in the due set under its bare id, and no
    // record of the layout.
    let pending = format!("{namespace}:pending");
    let _: () = redis::pipe()
        .zrem(&pending, format!("job:{}", job.id))
        .zadd(&pending, job.id.to_string(), 0)
        .del(format!("{namespace}:layout:work-items"))
        .query_async(&mut conn)
        .await
        .unwrap();

    store.reconcile().await.unwrap();

    assert_eq!(
        store.take_due(10, 100).await.unwrap(),
        vec![Ticket::generation(job.id)]
    );
}

#[tokio::test]
async fn a_tracked_job_leaves_one_mlflow_run_item_that_a_worker_logs_once() {
    let store = store().await;
    let tracked = JobSpec {
        tracked: true,
        ..spec("As a user, I want X")
    };
    let job = store.create(&tracked, None).await.unwrap().job;
    let untracked = store.create(&spec("untracked"), None).await.unwrap().job;
    for id in [job.id, untracked.id] {
        let lease = granted(claim(&store, id, "w").await);
        let failure = JobError::new("llm_invalid_request", "refused");
        assert_eq!(
            store.fail(&lease, &failure).await.unwrap(),
            LeaseState::Held
        );
    }
    assert_eq!(store.stats().await.unwrap().mlflow_backlog, 1);

    let run = Ticket {
        kind: WorkKind::MlflowRun,
        id: format!("job-{}", job.id),
    };
    let due = store.take_due(10, 100).await.unwrap();
    assert_eq!(
        due,
        vec![run.clone()],
        "only the tracked job has a run item"
    );
    let Claim::Granted(lease) = store.claim(&run, "w").await.unwrap() else {
        panic!("the run item is claimable");
    };
    assert!(matches!(lease.work, Work::MlflowRun(Subject::Job(id)) if id == job.id));
    let retry = RunNext::RetryAfter {
        delay: Duration::ZERO,
        error: "MLflow is down".into(),
    };
    assert_eq!(
        store.record_run(&lease, &retry).await.unwrap(),
        LeaseState::Held
    );
    assert_eq!(
        store.stats().await.unwrap().mlflow_backlog,
        1,
        "still waiting"
    );
    let lease = granted(store.claim(&run, "w").await.unwrap());
    assert_eq!(lease.attempt, 2);
    let logged = store.record_run(&lease, &RunNext::Logged).await.unwrap();
    assert_eq!(logged, LeaseState::Held);
    assert_eq!(store.stats().await.unwrap().mlflow_backlog, 0);
    assert!(matches!(
        store.claim(&run, "w").await.unwrap(),
        Claim::Stale
    ));
    assert_eq!(
        store.record_run(&lease, &RunNext::Logged).await.unwrap(),
        LeaseState::Lost,
        "a finished item is not written twice"
    );
}

#[tokio::test]
async fn racing_workers_agree_on_one_parent_run_per_batch() {
    let store = store().await;
    let batch = uuid::Uuid::now_v7();
    let (a, b) = tokio::join!(
        store.batch_run(batch, "run-a"),
        store.batch_run(batch, "run-b")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both get the winner");
    assert!(a == "run-a" || a == "run-b");
    assert_eq!(store.batch_run(batch, "run-c").await.unwrap(), a);
}

#[tokio::test]
async fn an_embedded_store_of_an_older_schema_is_upgraded_in_place() {
    // What versions 1 and 2 wrote: no table for the batches' MLflow runs (1), no time of a
    // retrying delivery's next attempt (1 and 2).
    let older = [
        (
            1,
            "DROP TABLE mlflow_runs; ALTER TABLE delivery_log DROP COLUMN next_attempt_at",
        ),
        (2, "ALTER TABLE delivery_log DROP COLUMN next_attempt_at"),
    ];
    for (version, downgrade) in older {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = SqliteJobStore::open(dir.path(), policy(Duration::from_secs(30), 3))
                .await
                .unwrap();
            store.create(&spec("kept"), None).await.unwrap().job.id
        };
        let path = dir.path().join(storyforge_store::sqlite::STORE_FILE);
        let pool = storyforge_store::sqlite::open_pool(&path).await.unwrap();
        let script = format!("{downgrade}; PRAGMA user_version = {version}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(script))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let store = SqliteJobStore::open(dir.path(), policy(Duration::from_secs(30), 3))
            .await
            .unwrap();
        assert_eq!(store.get(id).await.unwrap().unwrap().story, "kept");
        let batch = uuid::Uuid::now_v7();
        assert_eq!(store.batch_run(batch, "run-1").await.unwrap(), "run-1");
        assert_eq!(
            store.deliveries(Subject::Job(id)).await.unwrap(),
            Some(Vec::new()),
            "version {version}: the delivery log reads"
        );
        let pool = storyforge_store::sqlite::open_pool(&path).await.unwrap();
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('delivery_log')")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(
            columns.contains(&"next_attempt_at".to_string()),
            "{columns:?}"
        );
    }
}
