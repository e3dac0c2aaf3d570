//! `validate_requests`: the api's request validators (wire -> domain), as the service calls them.
//!
//! Properties: no validator panics, and neither does what the service does next with its answer
//! (the capability needs and reserved-address check of an accepted request; the gRPC status,
//! as an HTTP response, of a refused one). What a validator accepts holds no control character in
//! its text, its tags survive the newline-separated storage (`join_tags`/`split_tags`), and its
//! L7 values are what `l7::safe_text`/`safe_regex` promise the data planes.
use std::net::{IpAddr, Ipv4Addr};

use lbaas::api::v1 as pb;
use lbaas_api::{
    certs,
    convert::{self, NewListener, NewLoadBalancer, NewMember, NewMonitor, NewPool},
    error::ApiError,
    l7::{self, NewL7Policy, NewL7Rule},
    needs,
};

use crate::Request;

/// The metadata service's address, as an operator would reserve it.
const RESERVED: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))];

pub fn validate_requests(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let result = match Request::from_byte(selector) {
        Request::LoadBalancer => decoded::<pb::LoadBalancer>(message).map(|m| {
            convert::validate_load_balancer(&m).and_then(|lb| {
                load_balancer_ok(&lb);
                let _ = needs::load_balancer(&lb);
                convert::reserved_member_addresses(convert::tree_members(&lb), &RESERVED)
            })
        }),
        Request::Listener => decoded::<pb::Listener>(message).map(|m| {
            convert::validate_listener(&m).map(|l| {
                listener_ok("listener", &l);
                let mut out = Vec::new();
                needs::listener(&l, "listener", &mut out);
            })
        }),
        Request::Pool => decoded::<pb::Pool>(message).map(|m| {
            convert::validate_pool(&m).and_then(|p| {
                pool_ok("pool", &p);
                let mut out = Vec::new();
                needs::pool(&p, "pool", &mut out);
                let members = p
                    .members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (format!("pool.members[{i}]"), m));
                convert::reserved_member_addresses(members, &RESERVED)
            })
        }),
        Request::Member => decoded::<pb::Member>(message).map(|m| {
            convert::validate_member(&m).and_then(|m| {
                member_ok("member", &m);
                convert::reserved_member_addresses([("member".to_owned(), &m)], &RESERVED)
            })
        }),
        Request::HealthMonitor => decoded::<pb::HealthMonitor>(message).map(|m| {
            convert::validate_health_monitor(&m).map(|m| monitor_ok("health_monitor", &m))
        }),
        Request::L7Policy => decoded::<pb::L7Policy>(message)
            .map(|m| l7::validate_l7policy(&m).map(|p| policy_ok("l7policy", &p))),
        Request::L7Rule => decoded::<pb::L7Rule>(message)
            .map(|m| l7::validate_l7rule(&m).map(|r| rule_ok("rule", &r))),
        Request::Certificate => decoded::<pb::Certificate>(message).map(|m| {
            certs::validate_certificate(&m).map(|c| {
                text_ok("certificate.name", &c.name);
                for name in &c.subject_names {
                    text_ok("certificate.subject_names", name);
                }
            })
        }),
    };
    // A refusal goes back as a gRPC status with field violations (tonic writes it as headers).
    if let Some(Err(error)) = result {
        refusal_ok(error);
    }
}

fn decoded<M: prost::Message + Default>(message: &[u8]) -> Option<M> {
    M::decode(message).ok()
}

fn refusal_ok(error: ApiError) {
    let invalid = matches!(error, ApiError::Invalid(_));
    let status = tonic::Status::from(error);
    assert!(
        !invalid || status.code() == tonic::Code::InvalidArgument,
        "a refused request must answer INVALID_ARGUMENT, not {:?}",
        status.code()
    );
    let _ = status.into_http::<()>();
}

/// Text that reaches storage, configs or logs: no control characters (no line breaks).
fn text_ok(field: &str, s: &str) {
    assert!(
        !s.chars().any(char::is_control),
        "{field} was accepted with a control character: {s:?}"
    );
}

/// Tags are stored between newlines: what is accepted must come back as it went in.
fn tags_ok(field: &str, tags: &[String]) {
    for t in tags {
        text_ok(field, t);
    }
    let stored = convert::join_tags(tags);
    assert_eq!(
        convert::split_tags(&stored),
        tags,
        "{field}: accepted tags do not survive storage"
    );
}

fn load_balancer_ok(lb: &NewLoadBalancer) {
    text_ok("load_balancer.name", &lb.name);
    text_ok("load_balancer.description", &lb.description);
    text_ok("load_balancer.flavor", &lb.flavor);
    text_ok("load_balancer.vip_network_id", &lb.vip_network_id);
    tags_ok("load_balancer.tags", &lb.tags);
    for l in &lb.listeners {
        listener_ok("load_balancer.listeners[]", l);
    }
    for p in &lb.pools {
        pool_ok("load_balancer.pools[]", p);
    }
}

fn listener_ok(f: &str, l: &NewListener) {
    assert_ne!(l.port, 0, "{f}.protocol_port 0 was accepted");
    text_ok(f, &l.name);
    text_ok(f, &l.description);
    tags_ok(f, &l.tags);
    for cidr in &l.allowed_cidrs {
        assert!(
            cidr.parse::<ipnet::IpNet>().is_ok(),
            "{f}.allowed_cidrs: accepted {cidr:?} is not canonical CIDR"
        );
    }
    if let Some(p) = &l.default_pool {
        pool_ok(f, p);
    }
}

fn pool_ok(f: &str, p: &NewPool) {
    text_ok(f, &p.name);
    text_ok(f, &p.description);
    text_ok(f, &p.persistence_cookie_name);
    tags_ok(f, &p.tags);
    for m in &p.members {
        member_ok(f, m);
    }
    if let Some(m) = &p.monitor {
        monitor_ok(f, m);
    }
}

fn member_ok(f: &str, m: &NewMember) {
    assert_ne!(m.port, 0, "{f}: member port 0 was accepted");
    assert!(
        !m.address.is_unspecified() && !m.address.is_multicast(),
        "{f}: member address {} was accepted",
        m.address
    );
    text_ok(f, &m.name);
    tags_ok(f, &m.tags);
}

fn monitor_ok(f: &str, m: &NewMonitor) {
    text_ok(f, &m.name);
    text_ok(f, &m.http_method);
    text_ok(f, &m.url_path);
    text_ok(f, &m.expected_codes);
}

fn policy_ok(f: &str, p: &NewL7Policy) {
    text_ok(f, &p.name);
    text_ok(f, &p.description);
    tags_ok(f, &p.tags);
    for (what, url) in [
        ("redirect_url", &p.redirect_url),
        ("redirect_prefix", &p.redirect_prefix),
    ] {
        assert!(
            l7::safe_text(url),
            "{f}.{what}: accepted {url:?} is not safe_text"
        );
    }
    for r in &p.rules {
        rule_ok(f, r);
    }
}

fn rule_ok(f: &str, r: &NewL7Rule) {
    let safe = if r.compare_type == "REGEX" {
        l7::safe_regex(&r.value)
    } else {
        l7::safe_text(&r.value)
    };
    assert!(
        safe && !r.value.is_empty(),
        "{f}: accepted rule value {:?} ({}) is not what the data planes can hold",
        r.value,
        r.compare_type
    );
    text_ok(f, &r.key);
    tags_ok(f, &r.tags);
}
