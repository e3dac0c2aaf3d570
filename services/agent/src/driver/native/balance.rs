//! Choosing a member: the usable primaries, or the usable backups when no primary is; then
//! weighted round robin, least connections (relative to weight) or a hash of the client address.
use std::{net::IpAddr, net::SocketAddr, sync::atomic::Ordering};

use lbaas::agent::v1::Algorithm;

use super::{Member, Pool};

/// The member for a new connection, avoiding `avoid` (a member that just refused) when another
/// is usable.
pub fn pick(pool: &Pool, client: IpAddr, avoid: Option<SocketAddr>) -> Option<&Member> {
    let usable = |backup: bool| -> Vec<&Member> {
        pool.members
            .iter()
            .filter(|m| m.backup == backup && m.usable())
            .collect()
    };
    let mut set = usable(false);
    if set.is_empty() {
        set = usable(true);
    }
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
        Algorithm::LeastConnections => set.into_iter().min_by(|a, b| {
            // a.active / a.weight < b.active / b.weight, without division.
            let load = |m: &Member| m.state.active.load(Ordering::Relaxed) as u64;
            (load(a) * u64::from(b.weight)).cmp(&(load(b) * u64::from(a.weight)))
        }),
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
}
