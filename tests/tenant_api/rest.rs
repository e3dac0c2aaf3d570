//! The Octavia REST face adds no behaviour of its own: the same create -> update -> delete of a
//! whole tree (load balancer, listener, pool, member, health monitor, L7 policy and rule) through
//! gRPC and through REST stores the same objects, and deletes them the same way.

use super::*;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

/// One REST call on the api replica's REST face, in `project`: (HTTP status, JSON body or Null).
async fn rest(
    addr: std::net::SocketAddr,
    project: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .header("x-project-id", project)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

/// `rest` that must answer `want`; returns the body's `key` object (or the whole body).
async fn rest_ok(
    addr: std::net::SocketAddr,
    project: &str,
    (method, path): (&str, &str),
    body: Option<Value>,
    want: u16,
    key: &str,
) -> Value {
    let (status, value) = rest(addr, project, method, path, body).await;
    assert_eq!(status, want, "{method} {path}: {value}");
    value.get(key).cloned().unwrap_or(value)
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// The ids of one tree, created by one face.
struct Tree {
    lb: String,
    listener: String,
    pool: String,
    member: String,
    monitor: String,
    policy: String,
    rule: String,
}

/// What a face cannot make equal: ids (replaced by their role), the VIP, etags, times,
/// generations and health (operating status follows the device, not the request).
fn stored(api: &Api, project: &str, tree: &Tree) -> impl Future<Output = String> {
    let (mut api, project) = (api.clone(), project.to_owned());
    let ids = [
        (tree.lb.clone(), "LB"),
        (tree.listener.clone(), "LISTENER"),
        (tree.pool.clone(), "POOL"),
        (tree.member.clone(), "MEMBER"),
        (tree.monitor.clone(), "MONITOR"),
        (tree.policy.clone(), "POLICY"),
        (tree.rule.clone(), "RULE"),
    ];
    async move {
        let mut lb = get(&mut api, &project, &ids[0].0).await.unwrap();
        lb.vip_address.clear();
        lb.etag.clear();
        (lb.create_time_ms, lb.update_time_ms) = (0, 0);
        (lb.generation, lb.applied_generation) = (0, 0);
        lb.operating_status = 0;
        for listener in &mut lb.listeners {
            listener.etag.clear();
            listener.operating_status = 0;
        }
        for pool in &mut lb.pools {
            pool.etag.clear();
            pool.operating_status = 0;
            for member in &mut pool.members {
                member.etag.clear();
                member.operating_status = 0;
            }
            if let Some(hm) = pool.healthmonitor.as_mut() {
                hm.etag.clear();
                hm.operating_status = 0;
            }
        }
        let mut policies = api
            .list_l7_policies(in_project(
                &project,
                pb::ListL7PoliciesRequest {
                    listener_id: ids[1].0.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .l7policies;
        for policy in &mut policies {
            policy.etag.clear();
            policy.operating_status = 0;
            for rule in &mut policy.rules {
                rule.etag.clear();
                rule.operating_status = 0;
            }
        }
        let mut text = format!("{lb:#?}\n{policies:#?}");
        for (id, role) in &ids {
            text = text.replace(id.as_str(), role);
        }
        text
    }
}

async fn rest_is_grpc(db: Db) {
    let mut stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let (_, addr) = stack.start_api_replica_with_rest().await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let p = project.as_str();
    // A flavor every device serves: both updates resize to it (`flavor_id` on REST).
    stack
        .devices()
        .await
        .create_service_type(lbaas::scheduler::v1::CreateServiceTypeRequest {
            service_type: Some(lbaas::scheduler::v1::ServiceType {
                name: "wide".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    // Through gRPC.
    let lb = create(
        &mut api,
        p,
        pb::LoadBalancer {
            name: "twin".into(),
            description: "one behaviour".into(),
            tags: vec!["a".into(), "b".into()],
            ..Default::default()
        },
    )
    .await;
    active(&api, p, &lb.id).await;
    let listener = api
        .create_listener(in_project(
            p,
            pb::CreateListenerRequest {
                listener: Some(pb::Listener {
                    loadbalancer_id: lb.id.clone(),
                    name: "http".into(),
                    protocol: pb::Protocol::Http.into(),
                    protocol_port: 80,
                    connection_limit: 100,
                    timeout_client_data_ms: 20_000,
                    allowed_cidrs: vec!["10.0.0.0/8".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    active(&api, p, &lb.id).await;
    let pool = api
        .create_pool(in_project(
            p,
            pb::CreatePoolRequest {
                pool: Some(pb::Pool {
                    listener_id: listener.id.clone(),
                    name: "backends".into(),
                    protocol: pb::Protocol::Http.into(),
                    lb_algorithm: pb::LbAlgorithm::RoundRobin.into(),
                    session_persistence: Some(pb::SessionPersistence {
                        r#type: pb::SessionPersistenceType::AppCookie.into(),
                        cookie_name: "sid".into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    active(&api, p, &lb.id).await;
    let member = api
        .create_member(in_project(
            p,
            pb::CreateMemberRequest {
                member: Some(pb::Member {
                    pool_id: pool.id.clone(),
                    name: "m1".into(),
                    address: "127.0.0.1".into(),
                    protocol_port: 8080,
                    weight: Some(3),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    active(&api, p, &lb.id).await;
    let monitor = api
        .create_health_monitor(in_project(
            p,
            pb::CreateHealthMonitorRequest {
                health_monitor: Some(pb::HealthMonitor {
                    pool_id: pool.id.clone(),
                    name: "hm".into(),
                    r#type: pb::HealthMonitorType::Http.into(),
                    delay_s: 5,
                    timeout_s: 3,
                    max_retries: 2,
                    url_path: "/healthz".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    active(&api, p, &lb.id).await;
    let policy = api
        .create_l7_policy(in_project(
            p,
            pb::CreateL7PolicyRequest {
                l7policy: Some(pb::L7Policy {
                    listener_id: listener.id.clone(),
                    name: "deny-admin".into(),
                    action: pb::L7PolicyAction::Reject.into(),
                    position: 1,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    active(&api, p, &lb.id).await;
    let rule = api
        .create_l7_rule(in_project(
            p,
            pb::CreateL7RuleRequest {
                rule: Some(pb::L7Rule {
                    l7policy_id: policy.id.clone(),
                    r#type: pb::L7RuleType::Path.into(),
                    compare_type: pb::L7RuleCompareType::StartsWith.into(),
                    value: "/admin".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    active(&api, p, &lb.id).await;
    // Updates.
    api.update_load_balancer(in_project(
        p,
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: lb.id.clone(),
                description: "updated".into(),
                tags: vec!["c".into()],
                flavor: "wide".into(),
                ..Default::default()
            }),
            update_mask: mask(&["description", "tags", "flavor"]),
        },
    ))
    .await
    .unwrap();
    active(&api, p, &lb.id).await;
    api.update_listener(in_project(
        p,
        pb::UpdateListenerRequest {
            listener: Some(pb::Listener {
                id: listener.id.clone(),
                connection_limit: 500,
                timeout_member_data_ms: 40_000,
                ..Default::default()
            }),
            update_mask: mask(&["connection_limit", "timeout_member_data_ms"]),
        },
    ))
    .await
    .unwrap();
    active(&api, p, &lb.id).await;
    api.update_pool(in_project(
        p,
        pb::UpdatePoolRequest {
            pool: Some(pb::Pool {
                id: pool.id.clone(),
                lb_algorithm: pb::LbAlgorithm::LeastConnections.into(),
                description: "updated".into(),
                ..Default::default()
            }),
            update_mask: mask(&["lb_algorithm", "description"]),
        },
    ))
    .await
    .unwrap();
    active(&api, p, &lb.id).await;
    api.update_member(in_project(
        p,
        pb::UpdateMemberRequest {
            member: Some(pb::Member {
                id: member.id.clone(),
                weight: Some(7),
                backup: true,
                ..Default::default()
            }),
            update_mask: mask(&["weight", "backup"]),
        },
    ))
    .await
    .unwrap();
    active(&api, p, &lb.id).await;
    api.update_health_monitor(in_project(
        p,
        pb::UpdateHealthMonitorRequest {
            health_monitor: Some(pb::HealthMonitor {
                id: monitor.id.clone(),
                delay_s: 10,
                expected_codes: "200-204".into(),
                ..Default::default()
            }),
            update_mask: mask(&["delay_s", "expected_codes"]),
        },
    ))
    .await
    .unwrap();
    active(&api, p, &lb.id).await;
    api.update_l7_rule(in_project(
        p,
        pb::UpdateL7RuleRequest {
            rule: Some(pb::L7Rule {
                id: rule.id.clone(),
                value: "/private".into(),
                ..Default::default()
            }),
            update_mask: mask(&["value"]),
        },
    ))
    .await
    .unwrap();
    active(&api, p, &lb.id).await;
    let by_grpc = Tree {
        lb: lb.id,
        listener: listener.id,
        pool: pool.id,
        member: member.id,
        monitor: monitor.id,
        policy: policy.id,
        rule: rule.id,
    };

    // The same through REST, in Octavia's words (seconds, not milliseconds; enum names as text).
    let v = "/v2/lbaas";
    let lb = rest_ok(
        addr,
        p,
        ("POST", &format!("{v}/loadbalancers")),
        Some(json!({"loadbalancer": {
            "name": "twin", "description": "one behaviour", "tags": ["a", "b"]}})),
        201,
        "loadbalancer",
    )
    .await;
    let lb_id = id_of(&lb);
    active(&api, p, &lb_id).await;
    let listener = rest_ok(
        addr,
        p,
        ("POST", &format!("{v}/listeners")),
        Some(json!({"listener": {
            "loadbalancer_id": lb_id, "name": "http", "protocol": "HTTP",
            "protocol_port": "80", "connection_limit": 100, "timeout_client_data": 20000,
            "allowed_cidrs": ["10.0.0.0/8"]}})),
        201,
        "listener",
    )
    .await;
    assert_eq!(listener["loadbalancers"][0]["id"], lb_id.as_str());
    active(&api, p, &lb_id).await;
    let pool = rest_ok(
        addr,
        p,
        ("POST", &format!("{v}/pools")),
        Some(json!({"pool": {
            "listener_id": id_of(&listener), "name": "backends", "protocol": "HTTP",
            "lb_algorithm": "ROUND_ROBIN",
            "session_persistence": {"type": "APP_COOKIE", "cookie_name": "sid"}}})),
        201,
        "pool",
    )
    .await;
    active(&api, p, &lb_id).await;
    let pool_id = id_of(&pool);
    let member = rest_ok(
        addr,
        p,
        ("POST", &format!("{v}/pools/{pool_id}/members")),
        Some(json!({"member": {
            "name": "m1", "address": "127.0.0.1", "protocol_port": 8080, "weight": 3}})),
        201,
        "member",
    )
    .await;
    active(&api, p, &lb_id).await;
    let monitor = rest_ok(
        addr,
        p,
        ("POST", &format!("{v}/healthmonitors")),
        Some(json!({"healthmonitor": {
            "pool_id": pool_id, "name": "hm", "type": "HTTP", "delay": 5, "timeout": 3,
            "max_retries": 2, "url_path": "/healthz"}})),
        201,
        "healthmonitor",
    )
    .await;
    assert_eq!(monitor["pools"][0]["id"], pool_id.as_str());
    active(&api, p, &lb_id).await;
    let policy = rest_ok(
        addr,
        p,
        ("POST", &format!("{v}/l7policies")),
        Some(json!({"l7policy": {
            "listener_id": id_of(&listener), "name": "deny-admin", "action": "REJECT",
            "position": 1}})),
        201,
        "l7policy",
    )
    .await;
    active(&api, p, &lb_id).await;
    let policy_id = id_of(&policy);
    let rule = rest_ok(
        addr,
        p,
        ("POST", &format!("{v}/l7policies/{policy_id}/rules")),
        Some(json!({"rule": {
            "type": "PATH", "compare_type": "STARTS_WITH", "value": "/admin"}})),
        201,
        "rule",
    )
    .await;
    active(&api, p, &lb_id).await;
    let updates = [
        (
            format!("{v}/loadbalancers/{lb_id}"),
            json!({"loadbalancer": {"description": "updated", "tags": ["c"], "flavor_id": "wide"}}),
        ),
        (
            format!("{v}/listeners/{}", id_of(&listener)),
            json!({"listener": {"connection_limit": 500, "timeout_member_data": 40000}}),
        ),
        (
            format!("{v}/pools/{pool_id}"),
            json!({"pool": {"lb_algorithm": "LEAST_CONNECTIONS", "description": "updated"}}),
        ),
        (
            format!("{v}/pools/{pool_id}/members/{}", id_of(&member)),
            json!({"member": {"weight": 7, "backup": true}}),
        ),
        (
            format!("{v}/healthmonitors/{}", id_of(&monitor)),
            json!({"healthmonitor": {"delay": 10, "expected_codes": "200-204"}}),
        ),
        (
            format!("{v}/l7policies/{policy_id}/rules/{}", id_of(&rule)),
            json!({"rule": {"value": "/private"}}),
        ),
    ];
    for (path, body) in updates {
        rest_ok(addr, p, ("PUT", &path), Some(body), 200, "").await;
        active(&api, p, &lb_id).await;
    }
    let by_rest = Tree {
        lb: lb_id,
        listener: id_of(&listener),
        pool: pool_id,
        member: id_of(&member),
        monitor: id_of(&monitor),
        policy: policy_id,
        rule: id_of(&rule),
    };

    let (grpc_text, rest_text) = (
        stored(&api, p, &by_grpc).await,
        stored(&api, p, &by_rest).await,
    );
    assert_eq!(
        grpc_text, rest_text,
        "gRPC and REST stored different objects"
    );
    // REST reads show what gRPC stored: the gRPC tree through REST.
    let shown = rest_ok(
        addr,
        p,
        ("GET", &format!("{v}/pools/{}", by_grpc.pool)),
        None,
        200,
        "pool",
    )
    .await;
    assert_eq!(shown["lb_algorithm"], "LEAST_CONNECTIONS", "{shown}");
    assert_eq!(
        shown["healthmonitor_id"],
        by_grpc.monitor.as_str(),
        "{shown}"
    );

    // Deletes, child first: the member, the rule and the monitor through each face.
    api.delete_member(in_project(
        p,
        pb::DeleteMemberRequest {
            id: by_grpc.member.clone(),
        },
    ))
    .await
    .unwrap();
    api.delete_l7_rule(in_project(
        p,
        pb::DeleteL7RuleRequest {
            id: by_grpc.rule.clone(),
        },
    ))
    .await
    .unwrap();
    api.delete_health_monitor(in_project(
        p,
        pb::DeleteHealthMonitorRequest {
            id: by_grpc.monitor.clone(),
        },
    ))
    .await
    .unwrap();
    active(&api, p, &by_grpc.lb).await;
    for path in [
        format!("{v}/pools/{}/members/{}", by_rest.pool, by_rest.member),
        format!("{v}/l7policies/{}/rules/{}", by_rest.policy, by_rest.rule),
        format!("{v}/healthmonitors/{}", by_rest.monitor),
    ] {
        let (status, body) = rest(addr, p, "DELETE", &path, None).await;
        assert_eq!(status, 204, "DELETE {path}: {body}");
    }
    active(&api, p, &by_rest.lb).await;
    let (grpc_text, rest_text) = (
        stored(&api, p, &by_grpc).await,
        stored(&api, p, &by_rest).await,
    );
    assert_eq!(grpc_text, rest_text, "after the deletes");
    assert!(!grpc_text.contains("m1"), "the member is gone: {grpc_text}");

    // The rest, load balancer last: gRPC's cascade and REST's ?cascade=true.
    api.delete_load_balancer(in_project(
        p,
        pb::DeleteLoadBalancerRequest {
            id: by_grpc.lb.clone(),
            cascade: true,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let path = format!("{v}/loadbalancers/{}?cascade=true", by_rest.lb);
    let (status, body) = rest(addr, p, "DELETE", &path, None).await;
    assert_eq!(status, 204, "DELETE {path}: {body}");
    wait_gone(&api, p, &by_grpc.lb).await;
    wait_gone(&api, p, &by_rest.lb).await;
    let (status, _) = rest(addr, p, "GET", &format!("{v}/pools/{}", by_rest.pool), None).await;
    assert_eq!(status, 404, "the cascade took the pool");
    stack.stop().await;
}
on_both_databases!(rest_is_grpc, haproxy = false);
