//! Updates with `update_mask`: the paths a kind allows, and overlaying the masked fields of a
//! request onto the stored object, which is then validated whole, as a create would be.
use lbaas::api::v1 as pb;
use prost_types::FieldMask;

use crate::error::ApiError;

/// The paths an update may name, and those it may not change.
pub struct UpdatableFields {
    pub kind: &'static str,
    pub updatable: &'static [&'static str],
    pub immutable: &'static [&'static str],
}

/// The TLS option paths of listeners and pools (their driver may lack what they name).
pub const TLS_PATHS: &[&str] = &["alpn_protocols", "tls_versions", "tls_ciphers"];

pub const LOAD_BALANCER: UpdatableFields = UpdatableFields {
    kind: "load_balancer",
    updatable: &[
        "name",
        "description",
        "admin_state_up",
        "tags",
        "flavor",
        "access_log_target",
    ],
    immutable: &[
        "id",
        "project_id",
        "vip_address",
        "availability_zone",
        "vip_network_id",
        "additional_vips",
        "listeners",
        "pools",
    ],
};

pub const LISTENER: UpdatableFields = UpdatableFields {
    kind: "listener",
    updatable: &[
        "name",
        "description",
        "connection_limit",
        "default_pool_id",
        "admin_state_up",
        "tags",
        "timeout_client_data_ms",
        "timeout_member_connect_ms",
        "timeout_member_data_ms",
        "allowed_cidrs",
        "insert_headers",
        "default_tls_container_ref",
        "sni_container_refs",
        "alpn_protocols",
        "tls_versions",
        "tls_ciphers",
        "hsts_max_age",
        "hsts_include_subdomains",
        "hsts_preload",
    ],
    immutable: &[
        "id",
        "project_id",
        "loadbalancer_id",
        "protocol",
        "protocol_port",
        "default_pool",
        "l7policy_ids",
    ],
};

pub const POOL: UpdatableFields = UpdatableFields {
    kind: "pool",
    updatable: &[
        "name",
        "description",
        "lb_algorithm",
        "admin_state_up",
        "tags",
        "session_persistence",
        "tls_enabled",
        "alpn_protocols",
        "tls_versions",
        "tls_ciphers",
    ],
    immutable: &[
        "id",
        "project_id",
        "loadbalancer_id",
        "listener_id",
        "protocol",
        "members",
        "healthmonitor",
    ],
};

pub const MEMBER: UpdatableFields = UpdatableFields {
    kind: "member",
    updatable: &[
        "name",
        "weight",
        "admin_state_up",
        "backup",
        "tags",
        "monitor_address",
        "monitor_port",
    ],
    immutable: &["id", "project_id", "pool_id", "address", "protocol_port"],
};

pub const HEALTH_MONITOR: UpdatableFields = UpdatableFields {
    kind: "health_monitor",
    updatable: &[
        "name",
        "delay_s",
        "timeout_s",
        "max_retries",
        "max_retries_down",
        "http_method",
        "url_path",
        "expected_codes",
        "http_version",
        "domain_name",
        "admin_state_up",
    ],
    immutable: &["id", "project_id", "pool_id", "loadbalancer_id", "type"],
};

pub const L7POLICY: UpdatableFields = UpdatableFields {
    kind: "l7policy",
    updatable: &[
        "name",
        "description",
        "action",
        "redirect_pool_id",
        "redirect_url",
        "redirect_prefix",
        "redirect_http_code",
        "position",
        "admin_state_up",
        "tags",
    ],
    immutable: &["id", "project_id", "listener_id", "rules", "rule_ids"],
};

pub const L7RULE: UpdatableFields = UpdatableFields {
    kind: "rule",
    updatable: &[
        "type",
        "compare_type",
        "key",
        "value",
        "invert",
        "admin_state_up",
        "tags",
    ],
    immutable: &["id", "project_id", "l7policy_id"],
};

impl UpdatableFields {
    /// The paths to apply: those of the mask, or every updatable field when it is empty.
    pub fn paths(&self, mask: Option<&FieldMask>) -> Result<Vec<String>, ApiError> {
        let requested: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
        if requested.is_empty() {
            return Ok(self.updatable.iter().map(|p| (*p).to_owned()).collect());
        }
        let mut violations = Vec::new();
        for path in &requested {
            if self.immutable.contains(&path.as_str()) {
                violations.push((
                    "update_mask".to_owned(),
                    format!("{}.{path} cannot be changed", self.kind),
                ));
            } else if !self.updatable.contains(&path.as_str()) {
                violations.push((
                    "update_mask".to_owned(),
                    format!("{}.{path} is not a field", self.kind),
                ));
            }
        }
        if violations.is_empty() {
            Ok(requested)
        } else {
            Err(ApiError::Invalid(violations))
        }
    }
}

/// Refuses the update when the caller sent an etag that no longer matches.
pub fn check_etag(sent: &str, current: &str) -> Result<(), ApiError> {
    if !sent.is_empty() && sent != current {
        return Err(ApiError::Aborted(format!(
            "the object changed since it was read (etag {sent}, now {current}); read it again"
        )));
    }
    Ok(())
}

pub fn overlay_load_balancer(
    base: &mut pb::LoadBalancer,
    patch: &pb::LoadBalancer,
    paths: &[String],
) {
    for path in paths {
        match path.as_str() {
            "name" => base.name.clone_from(&patch.name),
            "description" => base.description.clone_from(&patch.description),
            "admin_state_up" => base.admin_state_up = Some(patch.admin_state_up.unwrap_or(true)),
            "tags" => base.tags.clone_from(&patch.tags),
            "flavor" => base.flavor.clone_from(&patch.flavor),
            "access_log_target" => base.access_log_target.clone_from(&patch.access_log_target),
            _ => {}
        }
    }
}

pub fn overlay_listener(base: &mut pb::Listener, patch: &pb::Listener, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "name" => base.name.clone_from(&patch.name),
            "description" => base.description.clone_from(&patch.description),
            "connection_limit" => base.connection_limit = patch.connection_limit,
            "default_pool_id" => base.default_pool_id.clone_from(&patch.default_pool_id),
            "admin_state_up" => base.admin_state_up = Some(patch.admin_state_up.unwrap_or(true)),
            "tags" => base.tags.clone_from(&patch.tags),
            "timeout_client_data_ms" => base.timeout_client_data_ms = patch.timeout_client_data_ms,
            "timeout_member_connect_ms" => {
                base.timeout_member_connect_ms = patch.timeout_member_connect_ms
            }
            "timeout_member_data_ms" => base.timeout_member_data_ms = patch.timeout_member_data_ms,
            "allowed_cidrs" => base.allowed_cidrs.clone_from(&patch.allowed_cidrs),
            "insert_headers" => base.insert_headers.clone_from(&patch.insert_headers),
            "default_tls_container_ref" => base
                .default_tls_container_ref
                .clone_from(&patch.default_tls_container_ref),
            "sni_container_refs" => base
                .sni_container_refs
                .clone_from(&patch.sni_container_refs),
            "alpn_protocols" => base.alpn_protocols.clone_from(&patch.alpn_protocols),
            "tls_versions" => base.tls_versions.clone_from(&patch.tls_versions),
            "tls_ciphers" => base.tls_ciphers.clone_from(&patch.tls_ciphers),
            "hsts_max_age" => base.hsts_max_age = patch.hsts_max_age,
            "hsts_include_subdomains" => {
                base.hsts_include_subdomains = patch.hsts_include_subdomains;
            }
            "hsts_preload" => base.hsts_preload = patch.hsts_preload,
            _ => {}
        }
    }
}

pub fn overlay_pool(base: &mut pb::Pool, patch: &pb::Pool, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "name" => base.name.clone_from(&patch.name),
            "description" => base.description.clone_from(&patch.description),
            "lb_algorithm" => base.lb_algorithm = patch.lb_algorithm,
            "admin_state_up" => base.admin_state_up = Some(patch.admin_state_up.unwrap_or(true)),
            "tags" => base.tags.clone_from(&patch.tags),
            "session_persistence" => base
                .session_persistence
                .clone_from(&patch.session_persistence),
            "tls_enabled" => base.tls_enabled = patch.tls_enabled,
            "alpn_protocols" => base.alpn_protocols.clone_from(&patch.alpn_protocols),
            "tls_versions" => base.tls_versions.clone_from(&patch.tls_versions),
            "tls_ciphers" => base.tls_ciphers.clone_from(&patch.tls_ciphers),
            _ => {}
        }
    }
}

pub fn overlay_l7policy(base: &mut pb::L7Policy, patch: &pb::L7Policy, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "name" => base.name.clone_from(&patch.name),
            "description" => base.description.clone_from(&patch.description),
            "action" => base.action = patch.action,
            "redirect_pool_id" => base.redirect_pool_id.clone_from(&patch.redirect_pool_id),
            "redirect_url" => base.redirect_url.clone_from(&patch.redirect_url),
            "redirect_prefix" => base.redirect_prefix.clone_from(&patch.redirect_prefix),
            "redirect_http_code" => base.redirect_http_code = patch.redirect_http_code,
            "position" => base.position = patch.position,
            "admin_state_up" => base.admin_state_up = Some(patch.admin_state_up.unwrap_or(true)),
            "tags" => base.tags.clone_from(&patch.tags),
            _ => {}
        }
    }
}

pub fn overlay_l7rule(base: &mut pb::L7Rule, patch: &pb::L7Rule, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "type" => base.r#type = patch.r#type,
            "compare_type" => base.compare_type = patch.compare_type,
            "key" => base.key.clone_from(&patch.key),
            "value" => base.value.clone_from(&patch.value),
            "invert" => base.invert = patch.invert,
            "admin_state_up" => base.admin_state_up = Some(patch.admin_state_up.unwrap_or(true)),
            "tags" => base.tags.clone_from(&patch.tags),
            _ => {}
        }
    }
}

pub fn overlay_member(base: &mut pb::Member, patch: &pb::Member, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "name" => base.name.clone_from(&patch.name),
            "weight" => base.weight = Some(patch.weight.unwrap_or(1)),
            "admin_state_up" => base.admin_state_up = Some(patch.admin_state_up.unwrap_or(true)),
            "backup" => base.backup = patch.backup,
            "tags" => base.tags.clone_from(&patch.tags),
            "monitor_address" => base.monitor_address.clone_from(&patch.monitor_address),
            "monitor_port" => base.monitor_port = patch.monitor_port,
            _ => {}
        }
    }
}

pub fn overlay_health_monitor(
    base: &mut pb::HealthMonitor,
    patch: &pb::HealthMonitor,
    paths: &[String],
) {
    for path in paths {
        match path.as_str() {
            "name" => base.name.clone_from(&patch.name),
            "delay_s" => base.delay_s = patch.delay_s,
            "timeout_s" => base.timeout_s = patch.timeout_s,
            "max_retries" => base.max_retries = patch.max_retries,
            "max_retries_down" => base.max_retries_down = patch.max_retries_down,
            "http_method" => base.http_method.clone_from(&patch.http_method),
            "url_path" => base.url_path.clone_from(&patch.url_path),
            "expected_codes" => base.expected_codes.clone_from(&patch.expected_codes),
            "http_version" => base.http_version = patch.http_version,
            "domain_name" => base.domain_name.clone_from(&patch.domain_name),
            "admin_state_up" => base.admin_state_up = Some(patch.admin_state_up.unwrap_or(true)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mask_paths() {
        assert_eq!(MEMBER.paths(None).unwrap().len(), MEMBER.updatable.len());
        let mask = FieldMask {
            paths: vec!["weight".into()],
        };
        assert_eq!(MEMBER.paths(Some(&mask)).unwrap(), vec!["weight"]);
        let mask = FieldMask {
            paths: vec!["address".into(), "bogus".into()],
        };
        let ApiError::Invalid(v) = MEMBER.paths(Some(&mask)).unwrap_err() else {
            panic!()
        };
        assert_eq!(v.len(), 2);
        assert!(check_etag("r1", "r2").is_err());
        assert!(check_etag("", "r2").is_ok());
    }
}
