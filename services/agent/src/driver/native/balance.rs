//! Choosing a member: the usable primaries, or the usable backups when no primary is; then
//! weighted round robin, least connections (relative to weight) or a hash of the client address.
//! Source-IP persistence first looks the client up in the pool's stick table (`persist.rs`).
use std::{net::IpAddr, net::SocketAddr, sync::atomic::Ordering};

use lbaas::agent::v1::Algorithm;

use super::{Member, Pool, persist::Persistence};

/// The members that may take new traffic now: the usable primaries, else the usable backups.
fn candidates(pool: &Pool) -> Vec<&Member> {
    let usable = |backup: bool| -> Vec<&Member> {
        pool.members
            .iter()
            .filter(|m| m.backup == backup && m.usable())
            .collect()
    };
    let set = usable(false);
    if set.is_empty() { usable(true) } else { set }
}

/// The member with this id, if it may take new traffic now (a backup only while no primary is
/// usable): what persistence honours.
pub fn usable_by_id<'a>(pool: &'a Pool, id: &str) -> Option<&'a Member> {
    candidates(pool).into_iter().find(|m| m.id == id)
}

/// The member for a new connection or request from `client`: the one source-IP persistence keeps
/// it on while that one is usable, else a balanced pick (remembered for the next time).
pub fn pick_persistent(pool: &Pool, client: IpAddr, avoid: Option<SocketAddr>) -> Option<&Member> {
    if pool.persistence != Persistence::SourceIp {
        return pick(pool, client, avoid);
    }
    let key = client.to_canonical().to_string();
    if let Some(id) = pool.sticky.get(&key)
        && let Some(member) = usable_by_id(pool, &id)
        && Some(member.addr) != avoid
    {
        return Some(member);
    }
    let member = pick(pool, client, avoid)?;
    pool.sticky.put(&key, &member.id);
    Some(member)
}

/// The member for a new connection, avoiding `avoid` (a member that just refused) when another
/// is usable.
pub fn pick(pool: &Pool, client: IpAddr, avoid: Option<SocketAddr>) -> Option<&Member> {
    let mut set = candidates(pool);
    if set.len() > 1
        && let Some(avoid) = avoid
    {
        set.retain(|m| m.addr != avoid);
    }
    let total: u64 = set.iter().map(|m| u64::from(m.weight)).sum();
    if total == 0 {
        return None;
    }
    match pool.algorithm {
        Algorithm::LeastConnections => {
            // a.active / a.weight against b.active / b.weight, without division; members equally
            // loaded take turns, as HAProxy's leastconn does.
            let load = |m: &Member| m.state.active.load(Ordering::Relaxed) as u64;
            let cmp = |a: &Member, b: &Member| {
                (load(a) * u64::from(b.weight)).cmp(&(load(b) * u64::from(a.weight)))
            };
            let least = set.iter().copied().min_by(|a, b| cmp(a, b))?;
            let tied: Vec<&Member> = set
                .into_iter()
                .filter(|m| cmp(m, least) == std::cmp::Ordering::Equal)
                .collect();
            let n = pool.next.fetch_add(1, Ordering::Relaxed);
            tied.get(n % tied.len()).copied()
        }
        Algorithm::SourceIp => {
            let h = lbaas_hash(client);
            weighted(&set, h % total)
        }
        _ => {
            let n = pool.next.fetch_add(1, Ordering::Relaxed) as u64;
            weighted(&set, n % total)
        }
    }
}

/// The member whose share of the cumulative weight holds `point`.
fn weighted<'a>(set: &[&'a Member], mut point: u64) -> Option<&'a Member> {
    for m in set {
        let w = u64::from(m.weight);
        if point < w {
            return Some(m);
        }
        point -= w;
    }
    set.last().copied()
}

/// A stable hash of an address (FNV-1a), so a client keeps its member across applies and restarts.
fn lbaas_hash(ip: IpAddr) -> u64 {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::{
        collections::BTreeMap,
        sync::{
            Arc,
            atomic::{AtomicBool, AtomicUsize},
        },
    };

    use super::*;
    use crate::driver::native::MemberState;

    fn member(id: &str, port: u16, weight: u32, backup: bool) -> Member {
        Member {
            id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            check_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight,
            backup,
            admin_up: true,
            state: Arc::new(MemberState {
                up: AtomicBool::new(true),
                active: AtomicUsize::new(0),
            }),
        }
    }

    fn pool(algorithm: Algorithm, members: Vec<Member>) -> Pool {
        Pool {
            id: "p".into(),
            algorithm,
            members,
            monitored: true,
            next: AtomicUsize::new(0),
            persistence: Persistence::None,
            sticky: Arc::default(),
            tls: false,
            member_tls: None,
            h2c: false,
            proxy: lbaas::agent::v1::ProxyProtocol::None,
        }
    }

    fn counts(pool: &Pool, n: usize, client: impl Fn(usize) -> IpAddr) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for i in 0..n {
            *c.entry(pick(pool, client(i), None).unwrap().id.clone())
                .or_default() += 1;
        }
        c
    }

    fn local(_: usize) -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn round_robin_splits_by_weight() {
        let p = pool(
            Algorithm::RoundRobin,
            vec![member("a", 1, 1, false), member("b", 2, 1, false)],
        );
        assert_eq!(
            counts(&p, 20, local),
            BTreeMap::from([("a".into(), 10), ("b".into(), 10)])
        );
        let p = pool(
            Algorithm::RoundRobin,
            vec![member("a", 1, 3, false), member("b", 2, 1, false)],
        );
        assert_eq!(
            counts(&p, 40, local),
            BTreeMap::from([("a".into(), 30), ("b".into(), 10)])
        );
    }

    #[test]
    fn backups_serve_only_when_no_primary_can() {
        let p = pool(
            Algorithm::RoundRobin,
            vec![member("a", 1, 1, false), member("bk", 2, 1, true)],
        );
        assert_eq!(counts(&p, 4, local), BTreeMap::from([("a".into(), 4)]));
        p.members[0].state.up.store(false, Ordering::Relaxed);
        assert_eq!(counts(&p, 4, local), BTreeMap::from([("bk".into(), 4)]));
    }

    #[test]
    fn weight_zero_and_down_members_get_nothing() {
        let mut drained = member("d", 3, 0, false);
        drained.admin_up = true;
        let p = pool(
            Algorithm::RoundRobin,
            vec![member("a", 1, 1, false), member("b", 2, 1, false), drained],
        );
        p.members[1].state.up.store(false, Ordering::Relaxed);
        assert_eq!(counts(&p, 6, local), BTreeMap::from([("a".into(), 6)]));
    }

    #[test]
    fn least_connections_and_source_ip() {
        let p = pool(
            Algorithm::LeastConnections,
            vec![member("a", 1, 1, false), member("b", 2, 1, false)],
        );
        p.members[0].state.active.store(5, Ordering::Relaxed);
        assert_eq!(pick(&p, local(0), None).unwrap().id, "b");
        // Equally loaded members take turns.
        p.members[0].state.active.store(0, Ordering::Relaxed);
        assert_eq!(
            counts(&p, 10, local),
            BTreeMap::from([("a".into(), 5), ("b".into(), 5)])
        );
        let p = pool(
            Algorithm::SourceIp,
            vec![member("a", 1, 1, false), member("b", 2, 1, false)],
        );
        let first = pick(&p, IpAddr::from([127, 0, 0, 9]), None)
            .unwrap()
            .id
            .clone();
        for _ in 0..10 {
            assert_eq!(
                pick(&p, IpAddr::from([127, 0, 0, 9]), None).unwrap().id,
                first
            );
        }
        let spread = counts(&p, 256, |i| {
            IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8])
        });
        assert_eq!(spread.len(), 2, "{spread:?}");
    }

    #[test]
    fn source_ip_persistence_keeps_a_client_while_its_member_is_usable() {
        let mut p = pool(
            Algorithm::RoundRobin,
            vec![
                member("a", 1, 1, false),
                member("b", 2, 1, false),
                member("bk", 3, 1, true),
            ],
        );
        p.persistence = Persistence::SourceIp;
        let client = |i: u8| IpAddr::from([10, 0, 0, i]);
        let first: Vec<String> = (1..=4)
            .map(|i| pick_persistent(&p, client(i), None).unwrap().id.clone())
            .collect();
        // Round robin spreads new clients; each then keeps its member.
        assert_eq!(first, ["a", "b", "a", "b"]);
        for _ in 0..5 {
            for i in 1..=4 {
                let got = pick_persistent(&p, client(i), None).unwrap();
                assert_eq!(got.id, first[usize::from(i) - 1]);
            }
        }
        // An IPv4-mapped IPv6 address is the same client.
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(pick_persistent(&p, mapped, None).unwrap().id, "a");
        // Its member goes down: the client moves, and stays on the new one when "a" returns.
        p.members[0].state.up.store(false, Ordering::Relaxed);
        assert_eq!(pick_persistent(&p, client(1), None).unwrap().id, "b");
        p.members[0].state.up.store(true, Ordering::Relaxed);
        assert_eq!(pick_persistent(&p, client(1), None).unwrap().id, "b");
        // A member that just refused is avoided.
        let avoid = Some(p.members[1].addr);
        assert_eq!(pick_persistent(&p, client(1), avoid).unwrap().id, "a");
        // Backups keep clients only while no primary is usable.
        p.members[0].state.up.store(false, Ordering::Relaxed);
        p.members[1].state.up.store(false, Ordering::Relaxed);
        assert_eq!(pick_persistent(&p, client(2), None).unwrap().id, "bk");
        p.members[1].state.up.store(true, Ordering::Relaxed);
        assert_eq!(pick_persistent(&p, client(2), None).unwrap().id, "b");
        assert_eq!(usable_by_id(&p, "bk").map(|m| m.id.as_str()), None);
    }
}
