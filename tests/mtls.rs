//! Mutual TLS between the services: with a CA, certificate and key configured, the api talks TLS
//! to tenants and the scheduler, and the scheduler and agents admit only peers presenting a
//! certificate from the CA. A load balancer goes ACTIVE through the whole TLS chain; a peer without
//! a certificate, with one from another CA, or speaking plaintext is refused at the handshake, and
//! an agent with another CA's certificate never gets registered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::{net::SocketAddr, path::Path, time::Duration};

use lbaas::{
    api::v1 as pb,
    server::tls::{TlsConfig, endpoint},
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A CA that signs certificates for 127.0.0.1 and localhost.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes ca.pem, NAME.pem and NAME.key under `dir` and returns the TLS flags for them.
    fn issue(&self, dir: &Path, name: &str) -> TlsConfig {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, &self.pem).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        TlsConfig {
            ca: Some(ca),
            cert: Some(dir.join(format!("{name}.pem"))),
            key: Some(dir.join(format!("{name}.key"))),
            plaintext: false,
            health_listen: None,
        }
    }
}

/// Whether a Health check over `tls` (or plaintext) to `addr` gets SERVING.
async fn serving(addr: SocketAddr, tls: &TlsConfig) -> Result<(), String> {
    let channel: Channel = endpoint(&format!("http://{addr}"), tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("check: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_talk_mutual_tls_and_refuse_strangers() {
    let dir = std::env::temp_dir().join(format!("lbaas-mtls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("lbaas test CA");
    let (api_tls, scheduler_tls, agent_tls, admin_tls) = (
        ca.issue(&dir, "api"),
        ca.issue(&dir, "scheduler"),
        ca.issue(&dir, "agent"),
        ca.issue(&dir, "admin"),
    );
    // A certificate from another CA, presented by a peer that trusts our CA: only the other side's
    // check of the client certificate can refuse it.
    let stranger_tls = {
        let issued = Ca::new("another CA").issue(&dir, "stranger");
        TlsConfig {
            ca: api_tls.ca.clone(),
            ..issued
        }
    };
    // A client that trusts the CA but presents no certificate of its own.
    let anonymous = {
        let ca_only = dir.join("anonymous-ca.pem");
        std::fs::write(&ca_only, &ca.pem).unwrap();
        ca_only
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let scheduler_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (scheduler, api, agent) = (
        scheduler_listener.local_addr().unwrap(),
        api_listener.local_addr().unwrap(),
        agent_listener.local_addr().unwrap(),
    );
    // Plaintext health-only ports for probes that cannot speak TLS (a port the system picked,
    // freed for the service to take).
    let free_port = || async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (scheduler_health, agent_health) = (free_port().await, free_port().await);
    let scheduler_task = tokio::spawn(lbaas_scheduler::run(
        lbaas_scheduler::SchedulerConfig {
            listen: scheduler,
            database_url: format!("sqlite://{}", dir.join("scheduler.db").display()),
            strategy: "least-loaded".into(),
            heartbeat_interval_ms: 200,
            agent_timeout_ms: 2000,
            failover_max_down_share: 0.5,
            placement_seed: 0,
            fleet_refresh_ms: 200,
            token_file: None,
            jwt: Default::default(),
            metrics_listen: None,
            tls: TlsConfig {
                health_listen: Some(scheduler_health),
                ..scheduler_tls.clone()
            },
        },
        scheduler_listener,
        stopped(stop_rx.clone()),
    ));
    let api_task = tokio::spawn(lbaas_api::run(
        lbaas_api::ApiConfig {
            rest_listen: None,
            rest_keystone: false,
            listen: api,
            database_url: format!("sqlite://{}", dir.join("api.db").display()),
            scheduler_url: format!("http://{scheduler}"),
            token_file: None,
            jwt: Default::default(),
            metrics_listen: None,
            tls: api_tls.clone(),
            allow_project_header: true,
            deploy_deadline_ms: 30_000,
            reconcile_interval_ms: 500,
            reserved_ips: vec![std::net::IpAddr::from([169, 254, 169, 254])],
            access_log_format: lbaas_api::store::OCTAVIA_TENANT_LOG_FORMAT.into(),
            quota_load_balancers: -1,
            quota_listeners: -1,
            quota_pools: -1,
            quota_members: -1,
            quota_health_monitors: -1,
            quota_l7_policies: -1,
            quota_l7_rules: -1,
            secret_key_file: None,
        },
        api_listener,
        stopped(stop_rx.clone()),
    ));
    let agent_task = tokio::spawn(lbaas_agent::run(
        lbaas_agent::AgentConfig {
            agent_id: "agent-tls".into(),
            listen: agent,
            scheduler_url: format!("http://{scheduler}"),
            advertise_url: None,
            driver: "noop".into(),
            devices: 1,
            capacity: 10,
            vip_cidr: support::unique_vip_cidr(),
            state_dir: dir.join("agent"),
            haproxy_bin: "haproxy".into(),
            dataplane_bin: Some(support::dataplane_bin()),
            dataplane_command: Vec::new(),
            noop_apply_delay_ms: 0,
            health_interval_ms: 100,
            stats_interval_ms: 500,
            stop_data_plane_on_exit: true,
            metrics_listen: None,
            network: Default::default(),
            tls: TlsConfig {
                health_listen: Some(agent_health),
                ..agent_tls.clone()
            },
        },
        agent_listener,
        stopped(stop_rx.clone()),
    ));

    // Each service serves its peers over TLS.
    for addr in [scheduler, api, agent] {
        support::poll_until(Duration::from_secs(20), "TLS health", || {
            let admin = admin_tls.clone();
            async move { serving(addr, &admin).await.ok() }
        })
        .await;
    }

    // The health-only ports answer probes in plaintext, and serve nothing else.
    for addr in [scheduler_health, agent_health] {
        support::poll_until(Duration::from_secs(20), "plaintext health", || async move {
            serving(addr, &TlsConfig::plaintext()).await.ok()
        })
        .await;
        let channel = endpoint(&format!("http://{addr}"), &TlsConfig::plaintext())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let other =
            lbaas::agent::v1::agent_service_client::AgentServiceClient::new(channel.clone())
                .discover(lbaas::agent::v1::DiscoverRequest::default())
                .await
                .unwrap_err();
        assert_eq!(
            other.code(),
            tonic::Code::Unimplemented,
            "{addr}: {other:?}"
        );
        let other = lbaas::scheduler::v1::device_service_client::DeviceServiceClient::new(channel)
            .list_devices(lbaas::scheduler::v1::ListDevicesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            other.code(),
            tonic::Code::Unimplemented,
            "{addr}: {other:?}"
        );
    }

    // Our clients refuse a server whose certificate comes from another CA: the api (dialling the
    // scheduler) and an agent (dialling the scheduler) would not talk to an impostor.
    let impostor_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor = impostor_listener.local_addr().unwrap();
    let impostor_task = {
        let (_, health) = tonic_health::server::health_reporter();
        let tls = stranger_tls.server(false).unwrap().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                    impostor_listener,
                )),
        )
    };
    // The impostor answers a client that trusts its CA, so it is up and only trust refuses it.
    let trusting = TlsConfig {
        ca: Some(dir.join("stranger-ca.pem")),
        ..api_tls.clone()
    };
    support::poll_until(Duration::from_secs(10), "the impostor to answer", || {
        let trusting = trusting.clone();
        async move { serving(impostor, &trusting).await.ok() }
    })
    .await;
    for (who, tls) in [("api", &api_tls), ("agent", &agent_tls)] {
        let refused = serving(impostor, tls).await;
        assert!(
            refused.is_err(),
            "the {who}'s client trusted an impostor scheduler"
        );
    }
    impostor_task.abort();

    // Strangers are refused by the scheduler and the agent: another CA's certificate, no
    // certificate, plaintext.
    let no_certificate = TlsConfig {
        ca: Some(anonymous.clone()),
        cert: None,
        key: None,
        plaintext: false,
        health_listen: None,
    };
    for addr in [scheduler, agent] {
        let foreign = serving(addr, &stranger_tls).await;
        assert!(foreign.is_err(), "{addr} admitted another CA's certificate");
        let plain = serving(addr, &TlsConfig::plaintext()).await;
        assert!(plain.is_err(), "{addr} spoke plaintext");
        // TlsConfig needs all three files for TLS; a bare rustls client with the CA and no
        // certificate must fail the handshake too.
        assert!(!no_certificate.enabled());
        let bare = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem)),
            )
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .connect()
            .await;
        let refused = match bare {
            Err(_) => true,
            Ok(channel) => HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .is_err(),
        };
        assert!(refused, "{addr} admitted a client without a certificate");
    }

    // The agent registered over mutual TLS; a create goes ACTIVE through api -> scheduler -> agent.
    let api_channel = endpoint(&format!("http://{api}"), &admin_tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut tenant = pb::load_balancer_service_client::LoadBalancerServiceClient::new(api_channel);
    let project = support::fresh_project();
    let lb = support::populated("secure", 80, vec![support::member_at(9)]);
    let created = support::poll_until(Duration::from_secs(20), "the agent to register", || {
        let mut tenant = tenant.clone();
        let (project, lb) = (project.clone(), lb.clone());
        async move {
            let created = tenant
                .create_load_balancer(support::in_project(
                    &project,
                    pb::CreateLoadBalancerRequest {
                        load_balancer: Some(lb),
                        request_id: "once".into(),
                    },
                ))
                .await
                .ok()?
                .into_inner();
            let settled = support::wait_settled(&tenant, &project, &created.id).await;
            (settled.provisioning_status() == pb::ProvisioningStatus::Active).then_some(settled)
        }
    })
    .await;
    assert!(!created.vip_address.is_empty());
    eprintln!("mtls: ACTIVE at {} through TLS", created.vip_address);
    let _ = tenant
        .list_load_balancers(support::in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap();

    // An agent whose certificate comes from another CA cannot register: its connections to the
    // scheduler (through a relay that counts them) end in the handshake, and the scheduler lists
    // only the agent with a valid certificate.
    let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = relay_listener.local_addr().unwrap();
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let relay_task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = relay_listener.accept().await else {
                return;
            };
            let ended_tx = ended_tx.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(scheduler).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                let _ = ended_tx.send(());
            });
        }
    });
    let stranger_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stranger_agent = tokio::spawn(lbaas_agent::run(
        lbaas_agent::AgentConfig {
            agent_id: "agent-stranger".into(),
            listen: stranger_listener.local_addr().unwrap(),
            scheduler_url: format!("http://{relay}"),
            advertise_url: None,
            driver: "noop".into(),
            devices: 1,
            capacity: 10,
            vip_cidr: support::unique_vip_cidr(),
            state_dir: dir.join("stranger"),
            haproxy_bin: "haproxy".into(),
            dataplane_bin: Some(support::dataplane_bin()),
            dataplane_command: Vec::new(),
            noop_apply_delay_ms: 0,
            health_interval_ms: 100,
            stats_interval_ms: 500,
            stop_data_plane_on_exit: true,
            metrics_listen: None,
            network: Default::default(),
            tls: stranger_tls.clone(),
        },
        stranger_listener,
        stopped(stop_rx.clone()),
    ));
    // Two registration attempts came and went.
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(20), ended.recv())
            .await
            .expect("the stranger agent never tried to register")
            .unwrap();
    }
    let mut provider = lbaas::scheduler::v1::device_service_client::DeviceServiceClient::new(
        endpoint(&format!("http://{scheduler}"), &admin_tls)
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let agents: Vec<String> = provider
        .list_agents(lbaas::scheduler::v1::ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(agents, vec!["agent-tls".to_owned()]);
    relay_task.abort();

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), stranger_agent).await;
    for task in [scheduler_task, api_task, agent_task] {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
