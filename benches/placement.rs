//! Placement: the decision's latency at 1k, 10k and 100k registered devices for every preset
//! strategy (with the exhaustive scoring of every device, as explain does, as the reference), and
//! durable placements per second through the scheduler's Placer on SQLite and PostgreSQL.
//! Run: `LBAAS_TEST_DATABASE_URL=postgres://... cargo bench --bench placement` (SQLite only
//! without it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use lbaas_scheduler::{
    deploy::AgentClients,
    placement::{PlacementAsk, Placer},
    strategy::{DeviceState, DeviceView, Fleet, PlacementRequest, build_strategy},
};
use sea_orm::{ActiveModelTrait as _, Set};
use sea_orm_migration::MigratorTrait as _;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `n` devices on 100 agents, each attached to one of 16 networks; 20% of the capacity already
/// taken by `n` projects of about 20 load balancers each, every project on a handful of devices.
fn fleet(n: usize, rng: &mut Lcg) -> Fleet {
    let mut f = Fleet::default();
    for a in 0..100 {
        f.heartbeat(&format!("agent-{a}"), i64::MAX / 2);
    }
    for i in 0..n {
        let mut networks = std::collections::BTreeSet::new();
        networks.insert(format!("net-{}", rng.next(16)));
        f.upsert(DeviceView {
            id: Arc::from(format!("dev-{i:06}").as_str()),
            driver: "haproxy".into(),
            agent_id: format!("agent-{}", i % 100),
            capacity: 100,
            load: 0,
            state: DeviceState::Active,
            is_virtual: true,
            labels: BTreeMap::new(),
            networks,
            capabilities: Default::default(),
            vip_cidr: None,
        });
    }
    for _ in 0..n * 20 {
        let project = rng.next(n as u64);
        // A project's load balancers sit on up to 8 devices near each other.
        let d = format!("dev-{:06}", (project * 7 + rng.next(8)) % n as u64);
        f.bind(&d, &format!("project-{project}"));
    }
    f
}

fn decision_latency() {
    println!("## Placement decision latency (one choice over the in-memory fleet)\n");
    println!("| devices | strategy | p50 | p99 | exhaustive p50 (explain, every device scored) |");
    println!("|---|---|---|---|---|");
    for n in [1_000usize, 10_000, 100_000] {
        let mut rng = Lcg(n as u64);
        let base = fleet(n, &mut rng);
        for preset in [
            "least-loaded",
            "tenant-affinity",
            "tenant-anti-affinity",
            "network-affinity",
            "random",
        ] {
            let strategy = build_strategy(preset, 1).unwrap();
            let mut f = base.clone();
            let mut samples = Vec::with_capacity(20_000);
            for i in 0..20_000 {
                let request = PlacementRequest {
                    loadbalancer_id: format!("lb-{i}"),
                    project_id: format!("project-{}", rng.next(n as u64)),
                    networks: vec![format!("net-{}", rng.next(16))],
                    live_after_ms: 0,
                    capabilities: Vec::new(),
                    ..Default::default()
                };
                let started = Instant::now();
                let chosen = strategy.choose(&f, &request);
                samples.push(started.elapsed());
                // Place it, so the fleet moves as it would.
                let chosen = chosen.expect("room left");
                f.bind(&chosen, &request.project_id);
            }
            samples.sort();
            let mut exhaustive = Vec::new();
            let rounds = (2_000_000 / n).clamp(20, 2000);
            for i in 0..rounds {
                let request = PlacementRequest {
                    loadbalancer_id: format!("lb-x{i}"),
                    project_id: "project-1".into(),
                    networks: vec!["net-3".into()],
                    live_after_ms: 0,
                    capabilities: Vec::new(),
                    ..Default::default()
                };
                let started = Instant::now();
                let e = strategy.explain(&f, &request);
                exhaustive.push(started.elapsed());
                assert!(!e.chosen.is_empty());
            }
            exhaustive.sort();
            println!(
                "| {n} | {preset} | {:.1} us | {:.1} us | {:.0} us |",
                percentile(&samples, 0.5).as_secs_f64() * 1e6,
                percentile(&samples, 0.99).as_secs_f64() * 1e6,
                percentile(&exhaustive, 0.5).as_secs_f64() * 1e6,
            );
        }
    }
    println!();
}

async fn durable(db: support::Db) {
    let dir = std::env::temp_dir().join(format!("lbaas-placement-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (url, label) = match db {
        support::Db::Sqlite => (
            format!("sqlite://{}", dir.join("scheduler.db").display()),
            "SQLite",
        ),
        support::Db::Postgres => {
            let admin = support::postgres_url();
            let name = format!("lbaas_placement_{}", uuid::Uuid::new_v4().simple());
            (
                support::create_postgres_database(&admin, &name).await,
                "PostgreSQL",
            )
        }
    };
    let conn = lbaas::server::connect_database(&url).await.unwrap();
    lbaas_scheduler::migration::Migrator::up(&conn, None)
        .await
        .unwrap();
    lbaas_scheduler::entity::agent::ActiveModel {
        id: Set("agent-bench".into()),
        address: Set("http://127.0.0.1:1".into()),
        last_heartbeat_ms: Set(lbaas::server::now_ms()),
        drivers: Set(String::new()),
    }
    .insert(&conn)
    .await
    .unwrap();
    for i in 0..100 {
        lbaas_scheduler::devices::upsert_device(
            &conn,
            &lbaas::scheduler::v1::Device {
                id: format!("dev-{i:03}"),
                driver: "haproxy".into(),
                agent_id: "agent-bench".into(),
                capacity: 1000,
                vip_cidr: "10.0.0.0/8".into(),
                r#virtual: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let placer = Arc::new(Placer::new(
        conn.clone(),
        "least-loaded".into(),
        0,
        3_600_000,
        Arc::new(AgentClients::default()),
    ));
    placer.refresh().await.unwrap();
    for in_flight in [1usize, 16] {
        let total = 1000;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..in_flight {
            let (placer, next) = (placer.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let ask = PlacementAsk {
                        loadbalancer_id: format!("lb-{in_flight}-{i}"),
                        project_id: format!("p{}", i % 50),
                        ..Default::default()
                    };
                    let t = Instant::now();
                    placer.place(&ask).await.unwrap();
                    latencies.push(t.elapsed());
                }
            }));
        }
        let mut latencies = Vec::new();
        for w in workers {
            latencies.extend(w.await.unwrap());
        }
        let elapsed = started.elapsed();
        latencies.sort();
        println!(
            "| {label} | {in_flight} | {:.0} placements/s | {:.2} ms | {:.2} ms |",
            total as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        );
    }
    conn.close().await.ok();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::main]
async fn main() {
    decision_latency();
    println!(
        "## Durable placements (choose, lock the device row, count, allocate a VIP, insert; 100 devices)\n"
    );
    println!("| database | in flight | rate | p50 | p99 |");
    println!("|---|---|---|---|---|");
    durable(support::Db::Sqlite).await;
    if std::env::var("LBAAS_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        durable(support::Db::Postgres).await;
    }
}
