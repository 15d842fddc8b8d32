//! A backlog far past apalis-redis's breaking point (~8,000 due tasks) drains completely: the
//! store holds the backlog and hands apalis only a bounded window of tickets. The jobs are the
//! built-in designer's, one case each, so the test measures the queue, not the generation.

use std::time::{Duration, Instant};

use futures::StreamExt;
use storyforge_domain::job::JobSpec;
use storyforge_store::ListQuery;
use storyforge_tests::app::TestEnv;
use storyforge_tests::fake_llm::{FakeLlm, answer};
use storyforge_tests::process::wait_until;

const BACKLOG: usize = 20_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_of_20000_jobs_is_drained_by_two_workers() {
    let mut env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    env.set("llm_provider", "builtin");
    let store = env.store().await;

    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "story": "As a shopper, I want to pay for my cart so that my order ships",
        "options": {"min_cases": 1, "max_cases": 1}
    }))
    .unwrap();
    futures::stream::iter(0..BACKLOG)
        .map(|_| {
            let (store, spec) = (store.clone(), spec.clone());
            async move { store.create(&spec, None).await.expect("create job") }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(
        store.stats().await.unwrap().by_status["queued"],
        BACKLOG as u64
    );

    let started = Instant::now();
    let workers = [env.spawn_worker_process(), env.spawn_worker_process()];
    let stats = wait_until(
        Duration::from_secs(900),
        "the backlog is drained",
        || async {
            let stats = store.stats().await.ok()?;
            (stats.finished() == BACKLOG as u64).then_some(stats)
        },
    )
    .await;
    let elapsed = started.elapsed();

    assert_eq!(
        stats.by_status["succeeded"],
        BACKLOG as u64,
        "{stats:?}\n{}",
        workers[0].log_contents()
    );
    assert_eq!(stats.queue_depth, 0);
    // Every job ran once: a second run would have needed a second claim, and each claim is
    // an attempt.
    let mut cursor = None;
    let mut seen = 0;
    loop {
        let page = store
            .list(&ListQuery {
                status: None,
                batch_id: None,
                limit: 500,
                cursor,
            })
            .await
            .unwrap();
        for job in &page.items {
            assert_eq!(job.attempts, 1, "{job:?}");
        }
        seen += page.items.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, BACKLOG);
    assert_eq!(env.llm.request_count(), 0, "the designer asks no model");

    // apalis would keep every finished ticket forever; the workers' vacuum removes them.
    let conn = storyforge_store::redis::connect(&env.settings().redis_url)
        .await
        .unwrap();
    let transport = storyforge_tickets::RedisTransport::new(conn.clone(), &env.namespace);
    let config = transport.apalis_config().clone();
    wait_until(
        Duration::from_secs(30),
        "apalis's finished tickets are vacuumed",
        || {
            let mut conn = conn.clone();
            let config = config.clone();
            async move {
                let data: usize = redis::cmd("HLEN")
                    .arg(config.job_data_hash())
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                let done: usize = redis::cmd("SCARD")
                    .arg(config.done_jobs_set())
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                (data == 0 && done == 0).then_some(())
            }
        },
    )
    .await;

    println!(
        "drained {BACKLOG} jobs with 2 workers in {elapsed:.1?} ({:.0} jobs/s, debug build)",
        BACKLOG as f64 / elapsed.as_secs_f64()
    );
}
