//! Operating status, derived the way Octavia derives it: from member health up through pools and
//! listeners to the load balancer. A member that is down makes its pool, listener and load
//! balancer DEGRADED; when every member of a pool is down the pool is in ERROR.
use lbaas::agent::v1::MemberHealth;

pub const ONLINE: &str = "ONLINE";
pub const OFFLINE: &str = "OFFLINE";
pub const DEGRADED: &str = "DEGRADED";
pub const ERROR: &str = "ERROR";
pub const DRAINING: &str = "DRAINING";
pub const NO_MONITOR: &str = "NO_MONITOR";

/// A member's operating status from what its device's checks say.
pub fn member_status(admin_state_up: bool, health: MemberHealth) -> &'static str {
    if !admin_state_up {
        return OFFLINE;
    }
    match health {
        MemberHealth::Up => ONLINE,
        MemberHealth::Down => ERROR,
        MemberHealth::Drain => DRAINING,
        MemberHealth::Maint => OFFLINE,
        MemberHealth::NoCheck | MemberHealth::Unspecified => NO_MONITOR,
    }
}

/// A pool's status from its enabled members' statuses.
pub fn pool_status(admin_state_up: bool, members: &[&str]) -> &'static str {
    if !admin_state_up {
        return OFFLINE;
    }
    let down = members.iter().filter(|s| **s == ERROR).count();
    if down > 0 && down == members.len() {
        ERROR
    } else if down > 0 {
        DEGRADED
    } else {
        ONLINE
    }
}

/// A listener's status from its default pool's.
pub fn listener_status(admin_state_up: bool, default_pool: Option<&str>) -> &'static str {
    match (admin_state_up, default_pool) {
        (false, _) => OFFLINE,
        (true, Some(ERROR)) => ERROR,
        (true, Some(DEGRADED)) => DEGRADED,
        _ => ONLINE,
    }
}

/// The load balancer's status: DEGRADED when any listener or pool is not ONLINE (or OFFLINE by choice).
pub fn load_balancer_status(admin_state_up: bool, children: &[&str]) -> &'static str {
    if !admin_state_up {
        OFFLINE
    } else if children.iter().any(|s| *s == DEGRADED || *s == ERROR) {
        DEGRADED
    } else {
        ONLINE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_member_degrades_its_pool_listener_and_load_balancer() {
        let members = [
            member_status(true, MemberHealth::Up),
            member_status(true, MemberHealth::Down),
        ];
        assert_eq!(members, [ONLINE, ERROR]);
        let pool = pool_status(true, &members);
        assert_eq!(pool, DEGRADED);
        let listener = listener_status(true, Some(pool));
        assert_eq!(listener, DEGRADED);
        assert_eq!(load_balancer_status(true, &[listener, pool]), DEGRADED);
    }

    #[test]
    fn all_members_down_is_a_pool_error() {
        assert_eq!(pool_status(true, &[ERROR, ERROR]), ERROR);
        assert_eq!(listener_status(true, Some(ERROR)), ERROR);
        assert_eq!(load_balancer_status(true, &[ERROR]), DEGRADED);
    }

    #[test]
    fn disabled_objects_are_offline_and_unchecked_members_count_as_fine() {
        assert_eq!(member_status(false, MemberHealth::Down), OFFLINE);
        assert_eq!(pool_status(true, &[NO_MONITOR, OFFLINE]), ONLINE);
        assert_eq!(pool_status(false, &[ERROR]), OFFLINE);
        assert_eq!(load_balancer_status(true, &[ONLINE, OFFLINE]), ONLINE);
        assert_eq!(pool_status(true, &[]), ONLINE);
    }
}
