//! The agent's metrics: driver applies by device and result, HAProxy reloads and runtime changes,
//! members by health, and every listener's traffic counters labelled with its load balancer.
use std::{collections::HashMap, sync::LazyLock};

use lbaas::{
    agent::v1::{ListenerStats, MemberHealth, MemberHealthStatus},
    server::metrics::{counter_vec, gauge_vec, histogram_vec},
};
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

static APPLIES: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "lbaas_agent_applies_total",
        "Driver applies (a data plane reload or runtime change) by device and result",
        &["device", "result"],
    )
});
static DATA_PLANE_CHANGES: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "lbaas_agent_reloads_total",
        "How HAProxy took each change, by device: a seamless reload, a runtime API change (no \
         reload) or a start (HAProxy was not running)",
        &["device", "kind"],
    )
});
static APPLY_DURATION: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "lbaas_agent_apply_duration_seconds",
        "Time a driver takes to apply a device's desired configs",
        &["device"],
    )
});
static MEMBERS: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    gauge_vec(
        "lbaas_members",
        "Members by health as the device's checks see them",
        &["device", "health"],
    )
});
static TRAFFIC: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "lbaas_listener_traffic_total",
        "Listener traffic: bytes in and out, connections and request errors, by load balancer",
        &["loadbalancer", "listener", "counter"],
    )
});
static ACTIVE: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    gauge_vec(
        "lbaas_listener_active_connections",
        "Connections open on each listener",
        &["loadbalancer", "listener"],
    )
});

pub fn record_apply(device: &str, ok: bool, seconds: f64) {
    if let Some(c) = &*APPLIES {
        c.with_label_values(&[device, if ok { "ok" } else { "error" }])
            .inc();
    }
    if let Some(h) = &*APPLY_DURATION {
        h.with_label_values(&[device]).observe(seconds);
    }
}

/// One change reached the data plane by `kind`: "reload", "runtime" or "start".
pub fn record_data_plane_change(device: &str, kind: &str) {
    if let Some(c) = &*DATA_PLANE_CHANGES {
        c.with_label_values(&[device, kind]).inc();
    }
}

pub fn export_members(device: &str, members: &[MemberHealthStatus]) {
    let Some(g) = &*MEMBERS else {
        return;
    };
    for health in [
        MemberHealth::Up,
        MemberHealth::Down,
        MemberHealth::Drain,
        MemberHealth::Maint,
        MemberHealth::NoCheck,
    ] {
        let n = members.iter().filter(|m| m.health() == health).count();
        let name = health.as_str_name().trim_start_matches("MEMBER_HEALTH_");
        g.with_label_values(&[device, name])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// What was last exported per listener, so the counters move by what the data plane added.
#[derive(Default)]
pub struct Traffic {
    last: HashMap<String, ListenerStats>,
}

impl Traffic {
    /// Exports `stats` (rising totals) of listeners owned by the load balancers in `owners`.
    pub fn export(&mut self, owners: &HashMap<String, String>, stats: &[ListenerStats]) {
        let (Some(counters), Some(active)) = (&*TRAFFIC, &*ACTIVE) else {
            return;
        };
        for s in stats {
            let lb = owners.get(&s.listener_id).map_or("", String::as_str);
            let before = self.last.get(&s.listener_id).cloned().unwrap_or_default();
            for (name, now, was) in [
                ("bytes_in", s.bytes_in, before.bytes_in),
                ("bytes_out", s.bytes_out, before.bytes_out),
                ("connections", s.total_connections, before.total_connections),
                ("request_errors", s.request_errors, before.request_errors),
            ] {
                counters
                    .with_label_values(&[lb, s.listener_id.as_str(), name])
                    .inc_by(now.saturating_sub(was));
            }
            active
                .with_label_values(&[lb, s.listener_id.as_str()])
                .set(i64::try_from(s.active_connections).unwrap_or(i64::MAX));
            self.last.insert(s.listener_id.clone(), s.clone());
        }
    }
}
