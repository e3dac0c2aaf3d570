//! API capacity on SQLite and PostgreSQL: Get RPC/s and latency with many calls in flight, and
//! durable creates/s, each next to the raw single-row insert rate of the same database measured in
//! the same run. Run: `LBAAS_TEST_DATABASE_URL=postgres://... cargo bench --bench api_capacity`
//! (SQLite only without it). `LBAAS_BENCH_SECONDS` sets each phase's length (5 by default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lbaas::api::v1 as pb;
use sea_orm::ConnectionTrait as _;
use support::{Db, Stack, StackOptions, in_project};

const GET_IN_FLIGHT: usize = 64;
const WRITE_IN_FLIGHT: usize = 16;

struct Phase {
    ops: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn summarize(mut latencies: Vec<Duration>, elapsed: Duration) -> Phase {
    latencies.sort();
    let pick = |p: f64| {
        latencies[((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    Phase {
        ops: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
    }
}

/// Runs `op` from `in_flight` tasks for `length`, collecting each call's latency.
async fn drive<F, Fut>(in_flight: usize, length: Duration, op: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|worker| {
            let (op, stop) = (op.clone(), stop.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    op(worker * 1_000_000 + n).await;
                    latencies.push(t.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    summarize(all, started.elapsed())
}

fn print(name: &str, phase: &Phase) {
    println!(
        "{name:<52} {:>9.0}/s  p50={:>7.2} ms  p99={:>7.2} ms  (n={})",
        phase.per_second,
        phase.p50.as_secs_f64() * 1e3,
        phase.p99.as_secs_f64() * 1e3,
        phase.ops
    );
}

async fn raw_inserts(url: &str, length: Duration) -> Phase {
    let db = lbaas::server::connect_database(url).await.unwrap();
    db.execute_unprepared("CREATE TABLE IF NOT EXISTS raw_insert (id VARCHAR(64) PRIMARY KEY, name VARCHAR(255) NOT NULL, created BIGINT NOT NULL)").await.unwrap();
    let backend = db.get_database_backend();
    drive(WRITE_IN_FLIGHT, length, move |n| {
        let db = db.clone();
        async move {
            let statement = sea_orm::Statement::from_sql_and_values(
                backend,
                match backend {
                    sea_orm::DbBackend::Postgres => {
                        "INSERT INTO raw_insert (id, name, created) VALUES ($1, $2, $3)"
                    }
                    _ => "INSERT INTO raw_insert (id, name, created) VALUES (?, ?, ?)",
                },
                [
                    uuid::Uuid::new_v4().to_string().into(),
                    format!("row-{n}").into(),
                    0i64.into(),
                ],
            );
            db.execute_raw(statement).await.unwrap();
        }
    })
    .await
}

async fn run(db: Db, length: Duration) {
    let label = match db {
        Db::Sqlite => "SQLite",
        Db::Postgres => "PostgreSQL",
    };
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        capacity: 1_000_000,
        ..Default::default()
    })
    .await;
    let api = stack.api_client().await;
    let project = "bench";
    let lb = api
        .clone()
        .create_load_balancer(in_project(
            project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    name: "target".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let get_api = api.clone();
    let id = lb.id.clone();
    let gets = drive(GET_IN_FLIGHT, length, move |_| {
        let mut api = get_api.clone();
        let id = id.clone();
        async move {
            api.get_load_balancer(in_project("bench", pb::GetLoadBalancerRequest { id }))
                .await
                .unwrap();
        }
    })
    .await;
    let create_api = api.clone();
    let creates = drive(WRITE_IN_FLIGHT, length, move |n| {
        let mut api = create_api.clone();
        async move {
            api.create_load_balancer(in_project(
                "bench",
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(pb::LoadBalancer {
                        name: format!("lb-{n}"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
        }
    })
    .await;
    stack.stop().await;
    // The same database engine, a fresh database, the same pool settings, no api in front.
    let raw = match db {
        Db::Sqlite => {
            let path =
                std::env::temp_dir().join(format!("lbaas-bench-raw-{}.db", uuid::Uuid::new_v4()));
            let phase = raw_inserts(&format!("sqlite://{}", path.display()), length).await;
            let _ = std::fs::remove_file(&path);
            phase
        }
        Db::Postgres => {
            let admin = support::postgres_url();
            let name = format!("lbaas_bench_raw_{}", uuid::Uuid::new_v4().simple());
            let admin_db = sea_orm::Database::connect(&admin).await.unwrap();
            admin_db
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap();
            let (base, _) = admin.rsplit_once('/').unwrap();
            let phase = raw_inserts(&format!("{base}/{name}"), length).await;
            let _ = admin_db
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            phase
        }
    };
    print(
        &format!("{label}: GetLoadBalancer, {GET_IN_FLIGHT} in flight"),
        &gets,
    );
    print(
        &format!("{label}: CreateLoadBalancer (durable), {WRITE_IN_FLIGHT} in flight"),
        &creates,
    );
    print(
        &format!("{label}: raw single-row INSERT, {WRITE_IN_FLIGHT} in flight"),
        &raw,
    );
    println!(
        "{label}: creates / raw inserts = {:.2}",
        creates.per_second / raw.per_second
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::var("LBAAS_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let length = Duration::from_secs(seconds);
    run(Db::Sqlite, length).await;
    if std::env::var("LBAAS_TEST_DATABASE_URL").is_ok() {
        run(Db::Postgres, length).await;
    }
}
