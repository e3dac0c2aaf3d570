//! Authentication and authorization, method by method: every RPC of the tenant API (load
//! balancers and their children, certificates, quotas) and of the scheduler's provider API, called
//! with each role's JWT, another project's JWT, no token, an expired JWT, a JWT signed by a key
//! the services do not know, and JWTs from another issuer or for another audience. Each call must
//! answer exactly the code its caller should get: readers cannot write; only admins reach the
//! provider API and set quotas; a missing or bad token is UNAUTHENTICATED, a missing right
//! PERMISSION_DENIED; another project's objects are NOT_FOUND to reads and writes alike and absent
//! from its lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::{future::Future, pin::Pin};

use lbaas::{
    api::v1::{
        self as pb, certificate_service_client::CertificateServiceClient,
        load_balancer_service_client::LoadBalancerServiceClient,
        quota_service_client::QuotaServiceClient,
    },
    scheduler::v1::{self as sched, device_service_client::DeviceServiceClient},
};
use support::{Db, Stack, StackOptions};
use tonic::{Code, Request};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Expired,
    WrongKey,
    WrongIssuer,
    WrongAudience,
    Reader,
    OtherProject,
    Member,
    Admin,
}

/// What a method is, and so what each caller gets from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads an object of the test project by id: NOT_FOUND to anyone outside the project.
    Read,
    /// Lists, or reads the caller's own: OK to everyone signed in (another project's lists are
    /// empty: checked after the matrix).
    List,
    /// Creates something in the caller's own project.
    Create,
    /// Changes something of the test project: NOT_FOUND to anyone outside the project.
    Write,
    /// Reads the test project's quota by project id: other projects are refused.
    QuotaRead,
    /// Quota administration.
    QuotaAdmin,
    /// The scheduler's provider API, with the code an admin gets for the request sent.
    Provider(Code),
}

/// The code `who` must get from a method of `kind`. The admin's token is for another project
/// ("ops"): admins administer, but reach a project's objects only through their own project.
fn expected(who: Who, kind: Kind) -> Code {
    use Kind::*;
    match (who, kind) {
        (Who::Nobody | Who::Expired | Who::WrongKey | Who::WrongIssuer | Who::WrongAudience, _) => {
            Code::Unauthenticated
        }
        (Who::Admin, Provider(code)) => code,
        (Who::Admin, QuotaAdmin | QuotaRead | List | Create) => Code::Ok,
        (Who::Admin | Who::OtherProject, Read | Write) => Code::NotFound,
        (_, QuotaAdmin | Provider(_)) => Code::PermissionDenied,
        (Who::OtherProject, QuotaRead) => Code::PermissionDenied,
        (Who::OtherProject, List | Create) => Code::Ok,
        (Who::Reader, Create | Write) => Code::PermissionDenied,
        (Who::Reader | Who::Member, Read | List | QuotaRead) => Code::Ok,
        (Who::Member, Create | Write) => Code::Ok,
    }
}

type Call = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = Code> + Send>> + Send + Sync>;

fn with<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if !token.is_empty() {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A table entry: the method's name, its kind and how to call it with a token.
macro_rules! rpc {
    ($table:ident, $client:expr, $kind:expr, $method:ident, $request:expr) => {{
        let client = $client.clone();
        let request = $request;
        let call: Call = Box::new(move |token: String| {
            let mut client = client.clone();
            let request = request.clone();
            Box::pin(async move { code(client.$method(with(&token, request)).await) })
        });
        // Named with the client: the tenant and provider APIs share method names.
        $table.push((
            concat!(stringify!($client), ".", stringify!($method)),
            $kind,
            call,
        ));
    }};
}

async fn role_method_matrix(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let other_project = support::fresh_project();
    let key = &stack.jwt_signing_pem;
    let token = |who: Who| -> String {
        match who {
            Who::Nobody => String::new(),
            Who::Expired => support::sign_jwt(key, &project, "member", -600),
            Who::WrongIssuer => support::sign_jwt_for(
                key,
                "someone-else",
                support::JWT_AUDIENCE,
                &project,
                "admin",
                600,
            ),
            Who::WrongAudience => support::sign_jwt_for(
                key,
                support::JWT_ISSUER,
                "another-service",
                &project,
                "admin",
                600,
            ),
            Who::WrongKey => {
                let stranger = rcgen::KeyPair::generate().unwrap();
                support::sign_jwt(&stranger.serialize_pem(), &project, "admin", 600)
            }
            Who::Reader => support::sign_jwt(key, &project, "reader", 600),
            Who::OtherProject => support::sign_jwt(key, &other_project, "member", 600),
            Who::Member => support::sign_jwt(key, &project, "member", 600),
            Who::Admin => support::sign_jwt(key, "ops", "admin", 600),
        }
    };

    // The objects every method is called on, made by a member of the project.
    let api_channel = support::channel(stack.api).await;
    let mut api = LoadBalancerServiceClient::new(api_channel.clone());
    let certs = CertificateServiceClient::new(api_channel.clone());
    let quotas = QuotaServiceClient::new(api_channel);
    let devices = DeviceServiceClient::new(support::channel(stack.scheduler).await);
    let member = token(Who::Member);
    let lb = api
        .create_load_balancer(with(
            &member,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(support::populated("owned", 80, vec![support::member_at(9)])),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let lb = {
        let mut api = api.clone();
        support::poll_until(std::time::Duration::from_secs(30), "ACTIVE", || {
            let request = with(&member, pb::GetLoadBalancerRequest { id: lb.id.clone() });
            let mut api = api.clone();
            async move {
                let got = api.get_load_balancer(request).await.ok()?.into_inner();
                (got.provisioning_status() == pb::ProvisioningStatus::Active).then_some(got)
            }
        })
        .await;
        api.get_load_balancer(with(
            &member,
            pb::GetLoadBalancerRequest { id: lb.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner()
    };
    let listener_id = lb.listener_ids[0].clone();
    let pool_id = lb.pool_ids[0].clone();
    let member_id = api
        .list_members(with(
            &member,
            pb::ListMembersRequest {
                pool_id: pool_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members[0]
        .id
        .clone();
    let monitor_id = api
        .create_health_monitor(with(
            &member,
            pb::CreateHealthMonitorRequest {
                health_monitor: Some(pb::HealthMonitor {
                    pool_id: pool_id.clone(),
                    r#type: pb::HealthMonitorType::Tcp as i32,
                    delay_s: 5,
                    timeout_s: 2,
                    max_retries: 2,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    // A second pool, without a monitor, for the matrix's monitor create (one monitor per pool).
    let bare_pool_id = api
        .create_pool(with(
            &member,
            pb::CreatePoolRequest {
                pool: Some(pb::Pool {
                    loadbalancer_id: lb.id.clone(),
                    ..support::http_pool(vec![])
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let policy = api
        .create_l7_policy(with(
            &member,
            pb::CreateL7PolicyRequest {
                l7policy: Some(pb::L7Policy {
                    listener_id: listener_id.clone(),
                    action: pb::L7PolicyAction::Reject as i32,
                    rules: vec![pb::L7Rule {
                        r#type: pb::L7RuleType::Path as i32,
                        compare_type: pb::L7RuleCompareType::StartsWith as i32,
                        value: "/blocked".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let policy_id = policy.id.clone();
    let rule_id = policy.rule_ids[0].clone();
    let generated = rcgen::generate_simple_self_signed(vec!["auth.example.com".into()]).unwrap();
    let certificate = pb::Certificate {
        certificate_pem: generated.cert.pem(),
        private_key_pem: generated.signing_key.serialize_pem(),
        ..Default::default()
    };
    let cert_id = certs
        .clone()
        .create_certificate(with(
            &member,
            pb::CreateCertificateRequest {
                certificate: Some(certificate.clone()),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;

    // Every method, with what it is.
    let mut table: Vec<(&str, Kind, Call)> = Vec::new();
    let (id, lid, pid, mid, hid, l7, rid, cid, p) = (
        lb.id.clone(),
        listener_id.clone(),
        pool_id.clone(),
        member_id.clone(),
        monitor_id.clone(),
        policy_id.clone(),
        rule_id.clone(),
        cert_id.clone(),
        project.clone(),
    );
    use Kind::*;
    rpc!(
        table,
        api,
        Create,
        create_load_balancer,
        pb::CreateLoadBalancerRequest {
            load_balancer: Some(support::populated("more", 81, vec![])),
            request_id: String::new(),
        }
    );
    rpc!(
        table,
        api,
        Read,
        get_load_balancer,
        pb::GetLoadBalancerRequest { id: id.clone() }
    );
    rpc!(
        table,
        api,
        List,
        list_load_balancers,
        pb::ListLoadBalancersRequest::default()
    );
    rpc!(
        table,
        api,
        Write,
        update_load_balancer,
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: id.clone(),
                name: "renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()]
            }),
        }
    );
    rpc!(
        table,
        api,
        Read,
        get_load_balancer_status_tree,
        pb::GetLoadBalancerStatusTreeRequest { id: id.clone() }
    );
    rpc!(
        table,
        api,
        Read,
        get_load_balancer_stats,
        pb::GetLoadBalancerStatsRequest { id: id.clone() }
    );
    rpc!(
        table,
        api,
        Read,
        get_listener_stats,
        pb::GetListenerStatsRequest { id: lid.clone() }
    );
    rpc!(
        table,
        api,
        Write,
        failover_load_balancer,
        pb::FailoverLoadBalancerRequest { id: id.clone() }
    );
    rpc!(
        table,
        api,
        Read,
        watch_load_balancer,
        pb::WatchLoadBalancerRequest { id: id.clone() }
    );
    rpc!(table, api, List, watch_project, pb::WatchProjectRequest {});
    rpc!(table, api, List, list_flavors, pb::ListFlavorsRequest {});
    rpc!(
        table,
        api,
        List,
        list_availability_zones,
        pb::ListAvailabilityZonesRequest {}
    );
    rpc!(
        table,
        api,
        Write,
        create_listener,
        pb::CreateListenerRequest {
            listener: Some(pb::Listener {
                loadbalancer_id: id.clone(),
                protocol: pb::Protocol::Tcp as i32,
                protocol_port: 90,
                ..Default::default()
            }),
            request_id: String::new(),
        }
    );
    rpc!(
        table,
        api,
        Read,
        get_listener,
        pb::GetListenerRequest { id: lid.clone() }
    );
    rpc!(
        table,
        api,
        List,
        list_listeners,
        pb::ListListenersRequest::default()
    );
    rpc!(
        table,
        api,
        Write,
        update_listener,
        pb::UpdateListenerRequest {
            listener: Some(pb::Listener {
                id: lid.clone(),
                name: "l".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()]
            }),
        }
    );
    rpc!(
        table,
        api,
        Write,
        create_pool,
        pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                loadbalancer_id: id.clone(),
                ..support::http_pool(vec![])
            }),
            request_id: String::new(),
        }
    );
    rpc!(
        table,
        api,
        Read,
        get_pool,
        pb::GetPoolRequest { id: pid.clone() }
    );
    rpc!(
        table,
        api,
        List,
        list_pools,
        pb::ListPoolsRequest::default()
    );
    rpc!(
        table,
        api,
        Write,
        update_pool,
        pb::UpdatePoolRequest {
            pool: Some(pb::Pool {
                id: pid.clone(),
                name: "p".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()]
            }),
        }
    );
    rpc!(
        table,
        api,
        Write,
        create_member,
        pb::CreateMemberRequest {
            member: Some(pb::Member {
                pool_id: pid.clone(),
                ..support::member_at(10)
            }),
            request_id: String::new(),
        }
    );
    rpc!(
        table,
        api,
        Read,
        get_member,
        pb::GetMemberRequest { id: mid.clone() }
    );
    rpc!(
        table,
        api,
        List,
        list_members,
        pb::ListMembersRequest {
            pool_id: pid.clone(),
            ..Default::default()
        }
    );
    rpc!(
        table,
        api,
        Write,
        update_member,
        pb::UpdateMemberRequest {
            member: Some(pb::Member {
                id: mid.clone(),
                weight: Some(2),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["weight".into()]
            }),
        }
    );
    rpc!(
        table,
        api,
        Write,
        batch_update_members,
        pb::BatchUpdateMembersRequest {
            pool_id: pid.clone(),
            members: vec![support::member_at(11)],
            additive_only: true,
        }
    );
    rpc!(
        table,
        api,
        Write,
        create_health_monitor,
        pb::CreateHealthMonitorRequest {
            health_monitor: Some(pb::HealthMonitor {
                pool_id: bare_pool_id.clone(),
                r#type: pb::HealthMonitorType::Tcp as i32,
                delay_s: 5,
                timeout_s: 2,
                max_retries: 2,
                ..Default::default()
            }),
            request_id: String::new(),
        }
    );
    rpc!(
        table,
        api,
        Read,
        get_health_monitor,
        pb::GetHealthMonitorRequest { id: hid.clone() }
    );
    rpc!(
        table,
        api,
        List,
        list_health_monitors,
        pb::ListHealthMonitorsRequest::default()
    );
    rpc!(
        table,
        api,
        Write,
        update_health_monitor,
        pb::UpdateHealthMonitorRequest {
            health_monitor: Some(pb::HealthMonitor {
                id: hid.clone(),
                name: "h".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()]
            }),
        }
    );
    rpc!(
        table,
        api,
        Write,
        create_l7_policy,
        pb::CreateL7PolicyRequest {
            l7policy: Some(pb::L7Policy {
                listener_id: lid.clone(),
                action: pb::L7PolicyAction::Reject as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }
    );
    rpc!(
        table,
        api,
        Read,
        get_l7_policy,
        pb::GetL7PolicyRequest { id: l7.clone() }
    );
    rpc!(
        table,
        api,
        List,
        list_l7_policies,
        pb::ListL7PoliciesRequest::default()
    );
    rpc!(
        table,
        api,
        Write,
        update_l7_policy,
        pb::UpdateL7PolicyRequest {
            l7policy: Some(pb::L7Policy {
                id: l7.clone(),
                name: "x".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()]
            }),
        }
    );
    rpc!(
        table,
        api,
        Write,
        create_l7_rule,
        pb::CreateL7RuleRequest {
            rule: Some(pb::L7Rule {
                l7policy_id: l7.clone(),
                r#type: pb::L7RuleType::Path as i32,
                compare_type: pb::L7RuleCompareType::EqualTo as i32,
                value: "/x".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }
    );
    rpc!(
        table,
        api,
        Read,
        get_l7_rule,
        pb::GetL7RuleRequest { id: rid.clone() }
    );
    rpc!(
        table,
        api,
        List,
        list_l7_rules,
        pb::ListL7RulesRequest {
            l7policy_id: l7.clone(),
            ..Default::default()
        }
    );
    rpc!(
        table,
        api,
        Write,
        update_l7_rule,
        pb::UpdateL7RuleRequest {
            rule: Some(pb::L7Rule {
                id: rid.clone(),
                invert: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["invert".into()]
            }),
        }
    );
    rpc!(
        table,
        certs,
        Create,
        create_certificate,
        pb::CreateCertificateRequest {
            certificate: Some(certificate.clone()),
        }
    );
    rpc!(
        table,
        certs,
        Read,
        get_certificate,
        pb::GetCertificateRequest { id: cid.clone() }
    );
    rpc!(
        table,
        certs,
        List,
        list_certificates,
        pb::ListCertificatesRequest::default()
    );
    rpc!(
        table,
        quotas,
        List,
        get_quota,
        pb::GetQuotaRequest::default()
    );
    rpc!(
        table,
        quotas,
        QuotaRead,
        get_quota,
        pb::GetQuotaRequest {
            project_id: p.clone()
        }
    );
    rpc!(
        table,
        quotas,
        QuotaAdmin,
        set_quota,
        pb::SetQuotaRequest {
            quota: Some(pb::Quota {
                project_id: p.clone(),
                load_balancers: 50,
                listeners: -1,
                pools: -1,
                members: -1,
                health_monitors: -1,
                ..Default::default()
            }),
        }
    );
    rpc!(
        table,
        quotas,
        QuotaAdmin,
        get_quota_defaults,
        pb::GetQuotaDefaultsRequest {}
    );
    rpc!(
        table,
        quotas,
        QuotaAdmin,
        reset_quota,
        pb::ResetQuotaRequest {
            project_id: p.clone()
        }
    );
    // Deletes last, children first, so the objects are there for everything above.
    rpc!(
        table,
        api,
        Write,
        delete_l7_rule,
        pb::DeleteL7RuleRequest { id: rid.clone() }
    );
    rpc!(
        table,
        api,
        Write,
        delete_l7_policy,
        pb::DeleteL7PolicyRequest { id: l7.clone() }
    );
    rpc!(
        table,
        api,
        Write,
        delete_health_monitor,
        pb::DeleteHealthMonitorRequest { id: hid.clone() }
    );
    rpc!(
        table,
        api,
        Write,
        delete_member,
        pb::DeleteMemberRequest { id: mid.clone() }
    );
    rpc!(
        table,
        api,
        Write,
        delete_listener,
        pb::DeleteListenerRequest { id: lid.clone() }
    );
    rpc!(
        table,
        api,
        Write,
        delete_pool,
        pb::DeletePoolRequest { id: pid.clone() }
    );
    rpc!(
        table,
        certs,
        Write,
        delete_certificate,
        pb::DeleteCertificateRequest { id: cid.clone() }
    );
    rpc!(
        table,
        api,
        Write,
        delete_load_balancer,
        pb::DeleteLoadBalancerRequest {
            id: id.clone(),
            cascade: true,
            ..Default::default()
        }
    );
    rpc!(
        table,
        devices,
        Provider(Code::Ok),
        list_devices,
        sched::ListDevicesRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::NotFound),
        get_device,
        sched::GetDeviceRequest { id: "none".into() }
    );
    rpc!(
        table,
        devices,
        Provider(Code::InvalidArgument),
        register_device,
        sched::RegisterDeviceRequest { device: None }
    );
    rpc!(
        table,
        devices,
        Provider(Code::InvalidArgument),
        update_device,
        sched::UpdateDeviceRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::NotFound),
        drain_device,
        sched::DrainDeviceRequest { id: "none".into() }
    );
    rpc!(
        table,
        devices,
        Provider(Code::NotFound),
        delete_device,
        sched::DeleteDeviceRequest { id: "none".into() }
    );
    rpc!(
        table,
        devices,
        Provider(Code::InvalidArgument),
        create_service_type,
        sched::CreateServiceTypeRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::NotFound),
        get_service_type,
        sched::GetServiceTypeRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::Ok),
        list_service_types,
        sched::ListServiceTypesRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::NotFound),
        delete_service_type,
        sched::DeleteServiceTypeRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::InvalidArgument),
        create_network,
        sched::CreateNetworkRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::Ok),
        list_networks,
        sched::ListNetworksRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::NotFound),
        delete_network,
        sched::DeleteNetworkRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::Ok),
        list_agents,
        sched::ListAgentsRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::Ok),
        explain_placement,
        sched::ExplainPlacementRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::InvalidArgument),
        create_availability_zone,
        sched::CreateAvailabilityZoneRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::NotFound),
        get_availability_zone,
        sched::GetAvailabilityZoneRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::Ok),
        list_availability_zones,
        sched::ListAvailabilityZonesRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::InvalidArgument),
        update_availability_zone,
        sched::UpdateAvailabilityZoneRequest::default()
    );
    rpc!(
        table,
        devices,
        Provider(Code::NotFound),
        delete_availability_zone,
        sched::DeleteAvailabilityZoneRequest::default()
    );

    // The methods of the tenant services and the provider API, all in the table.
    // LoadBalancerService 44, CertificateService 4, QuotaService 4, DeviceService 20.
    let methods: std::collections::BTreeSet<&str> = table.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        methods.len(),
        44 + 4 + 4 + 20,
        "a method is missing from the matrix"
    );

    // Another project lists none of the project's objects.
    let other = token(Who::OtherProject);
    let seen = api
        .list_load_balancers(with(&other, pb::ListLoadBalancersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .load_balancers;
    assert!(
        seen.iter().all(|l| l.id != lb.id),
        "another project listed it"
    );
    let pools = api
        .list_pools(with(&other, pb::ListPoolsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .pools;
    let policies = api
        .list_l7_policies(with(&other, pb::ListL7PoliciesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .l7policies;
    let certificates = certs
        .clone()
        .list_certificates(with(&other, pb::ListCertificatesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .certificates;
    assert!(
        pools.is_empty() && policies.is_empty() && certificates.is_empty(),
        "another project sees objects of the project"
    );

    // Callers in this order: another project's writes come before the member's, so one that
    // got through would show twice (its own code, then the member's NOT_FOUND).
    let mut failures = Vec::new();
    for who in [
        Who::Nobody,
        Who::Expired,
        Who::WrongKey,
        Who::WrongIssuer,
        Who::WrongAudience,
        Who::Reader,
        Who::OtherProject,
        Who::Member,
        Who::Admin,
    ] {
        let token = token(who);
        for (name, kind, call) in &table {
            let got = call(token.clone()).await;
            let want = expected(who, *kind);
            if got != want {
                failures.push(format!("{who:?} {name}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "unexpected codes:\n{}",
        failures.join("\n")
    );

    // The static token file still works beside JWTs.
    let mut admin_devices = support::admin_devices(stack.scheduler).await;
    admin_devices
        .list_devices(sched::ListDevicesRequest::default())
        .await
        .unwrap();
    stack.stop().await;
}
on_both_databases!(role_method_matrix, haproxy = false);
