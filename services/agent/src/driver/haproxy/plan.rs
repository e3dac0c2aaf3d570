//! Plans a change as runtime API commands when it touches only members (add, remove, weight,
//! enable/disable), so it needs no reload; anything structural (any other field of a load balancer,
//! listener or pool: certificates, L7 policies, persistence, TLS...) returns `None` and is
//! reloaded.
use std::collections::HashMap;

use lbaas::agent::v1::{LoadBalancerConfig, MemberConfig, PoolConfig};

use super::render::{can_add_at_runtime, server_args};

/// A runtime command and whether its failure may be tolerated (the config file, applied at the
/// next reload, is right either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub line: String,
    pub tolerate_failure: bool,
}

fn cmd(line: String) -> Command {
    Command {
        line,
        tolerate_failure: false,
    }
}

/// The runtime commands that turn `running` into `desired`, or `None` when only a reload can.
pub fn member_changes(
    running: &[LoadBalancerConfig],
    desired: &[LoadBalancerConfig],
) -> Option<Vec<Command>> {
    let running: HashMap<&str, &LoadBalancerConfig> =
        running.iter().map(|lb| (lb.id.as_str(), lb)).collect();
    if running.len() != desired.len() {
        return None;
    }
    let mut commands = Vec::new();
    for want in desired {
        let have = running.get(want.id.as_str())?;
        if without_members(have) != without_members(want) {
            return None;
        }
        for (old_pool, new_pool) in have.pools.iter().zip(&want.pools) {
            pool_changes(old_pool, new_pool, &mut commands)?;
        }
    }
    Some(commands)
}

fn without_members(lb: &LoadBalancerConfig) -> LoadBalancerConfig {
    let mut copy = lb.clone();
    for pool in &mut copy.pools {
        pool.members.clear();
    }
    copy
}

fn pool_changes(old: &PoolConfig, new: &PoolConfig, commands: &mut Vec<Command>) -> Option<()> {
    let backend = format!("p_{}", new.id);
    let before: HashMap<&str, &MemberConfig> =
        old.members.iter().map(|m| (m.id.as_str(), m)).collect();
    let after: HashMap<&str, &MemberConfig> =
        new.members.iter().map(|m| (m.id.as_str(), m)).collect();
    for m in &old.members {
        if !after.contains_key(m.id.as_str()) {
            // Out of rotation at once; deletion waits for its connections, and the next reload
            // drops it anyway, so a refused delete is not an error.
            commands.push(cmd(format!("set server {backend}/m_{} state maint", m.id)));
            commands.push(Command {
                line: format!("del server {backend}/m_{}", m.id),
                tolerate_failure: true,
            });
        }
    }
    for m in &new.members {
        match before.get(m.id.as_str()) {
            Some(was) => {
                if was.address != m.address
                    || was.port != m.port
                    || was.backup != m.backup
                    || was.monitor_address != m.monitor_address
                    || was.monitor_port != m.monitor_port
                {
                    return None;
                }
                if was.weight != m.weight {
                    commands.push(cmd(format!(
                        "set server {backend}/m_{} weight {}",
                        m.id, m.weight
                    )));
                }
                if was.admin_state_up != m.admin_state_up {
                    let state = if m.admin_state_up { "ready" } else { "maint" };
                    commands.push(cmd(format!(
                        "set server {backend}/m_{} state {state}",
                        m.id
                    )));
                }
            }
            None => {
                // The new server must carry every option its config line has (TLS, checks,
                // cookie); where `add server` cannot give it one, reload.
                if !can_add_at_runtime(new) {
                    return None;
                }
                let args = server_args(new, m, "member").ok()?;
                commands.push(cmd(format!("add server {backend}/m_{} {args}", m.id)));
                if new.monitor.is_some() {
                    commands.push(cmd(format!("enable health {backend}/m_{}", m.id)));
                }
                let state = if m.admin_state_up { "ready" } else { "maint" };
                commands.push(cmd(format!(
                    "set server {backend}/m_{} state {state}",
                    m.id
                )));
            }
        }
    }
    Some(())
}

/// Whether the runtime API accepted a command: it answers nothing, or a confirmation.
pub fn accepted(line: &str, answer: &str) -> bool {
    let answer = answer.trim();
    if line.starts_with("add server") {
        answer.starts_with("New server registered")
    } else if line.starts_with("del server") {
        answer.starts_with("Server deleted")
    } else {
        answer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use lbaas::agent::v1::{Algorithm, ListenerConfig, ListenerProtocol};

    use super::*;

    fn member(id: &str, weight: u32) -> MemberConfig {
        MemberConfig {
            id: id.into(),
            address: "127.0.0.1".into(),
            port: 9000,
            weight,
            admin_state_up: true,
            backup: false,
            ..Default::default()
        }
    }

    fn lb(members: Vec<MemberConfig>, algorithm: Algorithm) -> LoadBalancerConfig {
        LoadBalancerConfig {
            id: "lb".into(),
            vip_address: "127.0.0.2".into(),
            admin_state_up: true,
            listeners: vec![ListenerConfig {
                id: "l".into(),
                protocol: ListenerProtocol::Http as i32,
                port: 80,
                default_pool_id: "p".into(),
                admin_state_up: true,
                ..Default::default()
            }],
            pools: vec![PoolConfig {
                id: "p".into(),
                protocol: ListenerProtocol::Http as i32,
                algorithm: algorithm as i32,
                admin_state_up: true,
                members,
                monitor: None,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn member_changes_become_runtime_commands() {
        let running = [lb(
            vec![member("a", 1), member("b", 1)],
            Algorithm::RoundRobin,
        )];
        let desired = [lb(
            vec![member("a", 5), member("c", 1)],
            Algorithm::RoundRobin,
        )];
        let lines: Vec<String> = member_changes(&running, &desired)
            .unwrap()
            .into_iter()
            .map(|c| c.line)
            .collect();
        assert_eq!(
            lines,
            vec![
                "set server p_p/m_b state maint",
                "del server p_p/m_b",
                "set server p_p/m_a weight 5",
                "add server p_p/m_c 127.0.0.1:9000 weight 1",
                "set server p_p/m_c state ready",
            ]
        );
    }

    #[test]
    fn structural_changes_need_a_reload() {
        let running = [lb(vec![member("a", 1)], Algorithm::RoundRobin)];
        assert!(
            member_changes(
                &running,
                &[lb(vec![member("a", 1)], Algorithm::LeastConnections)]
            )
            .is_none()
        );
        assert!(member_changes(&running, &[]).is_none());
        let source = [lb(vec![member("a", 1)], Algorithm::SourceIp)];
        assert!(
            member_changes(
                &source,
                &[lb(
                    vec![member("a", 1), member("b", 1)],
                    Algorithm::SourceIp
                )]
            )
            .is_none()
        );
        assert_eq!(member_changes(&running, &running).unwrap(), vec![]);
    }

    #[test]
    fn new_members_carry_the_pool_options_or_wait_for_a_reload() {
        use lbaas::agent::v1::{PersistenceType, SessionPersistence};
        let with = |persistence: PersistenceType, tls: bool, members| {
            let mut lb = lb(members, Algorithm::RoundRobin);
            lb.pools[0].persistence = Some(SessionPersistence {
                r#type: persistence as i32,
                cookie_name: if persistence == PersistenceType::AppCookie {
                    "SID".into()
                } else {
                    String::new()
                },
            });
            lb.pools[0].tls_enabled = tls;
            lb
        };
        // TLS, and stick tables: `add server` takes `ssl verify none`, and a dynamic server gets
        // an id stick tables refer to.
        for persistence in [PersistenceType::SourceIp, PersistenceType::AppCookie] {
            let running = [with(persistence, true, vec![member("a", 1)])];
            let desired = [with(
                persistence,
                true,
                vec![member("a", 1), member("b", 1)],
            )];
            let lines: Vec<String> = member_changes(&running, &desired)
                .unwrap()
                .into_iter()
                .map(|c| c.line)
                .collect();
            assert_eq!(
                lines,
                vec![
                    "add server p_p/m_b 127.0.0.1:9000 weight 1 ssl verify none",
                    "set server p_p/m_b state ready",
                ]
            );
        }
        // `add server` refuses `cookie`.
        let running = [with(
            PersistenceType::HttpCookie,
            false,
            vec![member("a", 1)],
        )];
        let desired = [with(
            PersistenceType::HttpCookie,
            false,
            vec![member("a", 1), member("b", 1)],
        )];
        assert!(member_changes(&running, &desired).is_none());
        // Weights and removals still go at runtime there.
        let desired = [with(
            PersistenceType::HttpCookie,
            false,
            vec![member("a", 3)],
        )];
        assert!(member_changes(&running, &desired).is_some());
    }

    #[test]
    fn changes_to_listener_and_pool_features_need_a_reload() {
        use lbaas::agent::v1::{
            InsertHeader, L7PolicyConfig, PersistenceType, SessionPersistence, TlsCertificate,
        };
        let running = [lb(vec![member("a", 1)], Algorithm::RoundRobin)];
        let edits: Vec<fn(&mut LoadBalancerConfig)> = vec![
            |lb| lb.listeners[0].allowed_cidrs = vec!["10.0.0.0/8".into()],
            |lb| {
                lb.listeners[0].insert_headers = vec![InsertHeader::XForwardedFor as i32];
            },
            |lb| {
                lb.listeners[0].default_certificate = Some(TlsCertificate {
                    id: "c".into(),
                    ..Default::default()
                });
            },
            |lb| {
                lb.listeners[0].sni_certificates = vec![TlsCertificate::default()];
            },
            |lb| lb.listeners[0].l7_policies = vec![L7PolicyConfig::default()],
            |lb| {
                lb.pools[0].persistence = Some(SessionPersistence {
                    r#type: PersistenceType::SourceIp as i32,
                    cookie_name: String::new(),
                });
            },
            |lb| lb.pools[0].tls_enabled = true,
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut desired = running.clone();
            edit(&mut desired[0]);
            desired[0].pools[0].members.push(member("b", 1));
            assert!(member_changes(&running, &desired).is_none(), "edit {i}");
        }
    }
}
