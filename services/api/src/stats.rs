//! Traffic counters: the latest each agent reported for each listener (they arrive with member
//! health on the scheduler's stream), summed per load balancer for Octavia-like stats calls.
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use lbaas::{
    agent::v1::{HealthReport, ListenerStats},
    api::v1 as pb,
};

#[derive(Clone, Default)]
pub struct StatsBook {
    /// By listener id: the counters and when they were read.
    listeners: Arc<RwLock<HashMap<String, (ListenerStats, i64)>>>,
}

impl StatsBook {
    /// Records a report's counters (each replaces what was known of its listener).
    pub fn record(&self, report: &HealthReport) {
        let mut book = self.listeners.write().unwrap_or_else(|p| p.into_inner());
        for l in &report.listeners {
            book.insert(l.listener_id.clone(), (l.clone(), report.observed_ms));
        }
    }

    /// The counters of these listeners, summed; the oldest reading's time.
    pub fn sum<'a>(&self, listener_ids: impl IntoIterator<Item = &'a String>) -> pb::Stats {
        let book = self.listeners.read().unwrap_or_else(|p| p.into_inner());
        let mut total = pb::Stats::default();
        for id in listener_ids {
            if let Some((l, observed)) = book.get(id) {
                total.bytes_in += l.bytes_in;
                total.bytes_out += l.bytes_out;
                total.active_connections += l.active_connections;
                total.total_connections += l.total_connections;
                total.request_errors += l.request_errors;
                total.observed_ms = if total.observed_ms == 0 {
                    *observed
                } else {
                    total.observed_ms.min(*observed)
                };
            }
        }
        total
    }
}
