//! Placement strategies behind one trait. A strategy is filters (hard constraints, always the same)
//! followed by weighers with integer multipliers, written as a spec: `load`,
//! `affinity*10+load`, `network*10+load`, or a preset name (`least-loaded`, `tenant-affinity`,
//! `tenant-anti-affinity`, `network-affinity`, `random`). Every strategy is deterministic given
//! the fleet, the request and the seed, and can explain its choice.

pub mod filters;
pub mod fleet;
mod random;
mod weighted;

use std::{collections::BTreeMap, sync::Arc};

pub use fleet::{DeviceState, DeviceView, Fleet, PPM};
pub use random::Random;
pub use weighted::{Weigher, Weighted, ppm_text};

/// What kind of device the service type accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    #[default]
    Any,
    Physical,
    Virtual,
}

/// What is being placed, with the constraints of its service type.
#[derive(Debug, Clone, Default)]
pub struct PlacementRequest {
    pub loadbalancer_id: String,
    pub project_id: String,
    /// The driver the service type needs; `None` for any.
    pub driver: Option<String>,
    pub required_labels: BTreeMap<String, String>,
    /// The availability zone asked for and the labels its devices carry; `None` for any device.
    pub zone: Option<(String, BTreeMap<String, String>)>,
    pub kind: DeviceKind,
    /// The networks the load balancer uses: its VIP network first, then its members' networks.
    pub networks: Vec<String>,
    /// A device not to choose (the one a failover leaves).
    pub exclude: Option<String>,
    /// An agent (host) whose devices are not chosen: the other half of an ACTIVE_STANDBY pair
    /// lives there (anti-affinity).
    pub exclude_agent: Option<String>,
    /// Agents last heard from before this (Unix ms) are not placed on.
    pub live_after_ms: i64,
    /// Capabilities the device's driver must offer.
    pub capabilities: Vec<String>,
    /// A VIP the tenant asked for with no network: only devices whose own range holds it.
    pub vip_address: Option<std::net::IpAddr>,
}

/// One device in an explanation.
#[derive(Debug, Clone)]
pub struct Scored {
    pub device_id: String,
    pub eligible: bool,
    pub rejected_by: &'static str,
    pub reason: String,
    /// In parts per million.
    pub score: i64,
    /// (weigher, value in ppm, multiplier).
    pub terms: Vec<(&'static str, i64, i64)>,
}

/// A dry run: every device, best first, the winner and why.
#[derive(Debug, Clone)]
pub struct Explained {
    pub strategy: String,
    pub candidates: Vec<Scored>,
    /// Empty when nothing fits.
    pub chosen: String,
    pub why: String,
}

/// Chooses a device for a load balancer.
pub trait PlacementStrategy: Send + Sync {
    /// The spec the strategy runs, e.g. `affinity*10+load`.
    fn name(&self) -> String;
    /// The winner among devices that pass the filters, or `None` when nothing fits.
    fn choose(&self, fleet: &Fleet, request: &PlacementRequest) -> Option<Arc<str>>;
    /// Scores every device; its winner is always `choose`'s.
    fn explain(&self, fleet: &Fleet, request: &PlacementRequest) -> Explained;
}

/// The named presets and the specs they stand for.
pub const PRESETS: &[(&str, &str)] = &[
    ("least-loaded", "load"),
    ("tenant-affinity", "affinity*10+load"),
    ("tenant-anti-affinity", "affinity*-10+load"),
    ("network-affinity", "network*10+load"),
    ("random", "random"),
];

/// Builds a strategy from a preset name or a spec (`weigher[*multiplier]` joined by `+`).
pub fn build_strategy(spec: &str, seed: u64) -> Result<Arc<dyn PlacementStrategy>, String> {
    let spec = spec.trim();
    let spec = PRESETS
        .iter()
        .find(|(name, _)| *name == spec)
        .map_or(spec, |(_, s)| *s);
    if spec == "random" {
        return Ok(Arc::new(Random { seed }));
    }
    let mut terms = Vec::new();
    for term in spec.split('+') {
        let term = term.trim();
        let (name, multiplier) = match term.split_once('*') {
            Some((n, m)) => (
                n.trim(),
                m.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{term:?}: the multiplier must be an integer"))?,
            ),
            None => (term, 1),
        };
        let weigher = match name {
            "load" => Weigher::Load,
            "affinity" => Weigher::Affinity,
            "anti-affinity" => {
                terms.push((Weigher::Affinity, -multiplier));
                continue;
            }
            "network" => Weigher::Network,
            "jitter" => Weigher::Jitter,
            other => {
                return Err(format!(
                    "unknown weigher {other:?} (weighers: load, affinity, anti-affinity, network, jitter; presets: {})",
                    PRESETS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        if !(-1000..=1000).contains(&multiplier) {
            return Err(format!("{term:?}: multipliers lie between -1000 and 1000"));
        }
        if weigher == Weigher::Load && multiplier < 0 {
            return Err(format!("{term:?}: load cannot count against a device"));
        }
        terms.push((weigher, multiplier));
    }
    if terms.is_empty() {
        return Err("a strategy needs at least one weigher".into());
    }
    Ok(Arc::new(Weighted { terms, seed }))
}

/// FNV-1a over the seed and the parts, finished with splitmix64: stable across runs and builds.
pub fn seeded_hash(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Why nothing fits, in a line: the refusals counted by reason, with a few examples.
pub fn nothing_fits(refused: &[Scored]) -> String {
    if refused.is_empty() {
        return "no devices are registered".into();
    }
    let mut by_filter: BTreeMap<&str, (usize, Vec<String>)> = BTreeMap::new();
    for r in refused {
        let entry = by_filter.entry(r.rejected_by).or_default();
        entry.0 += 1;
        if entry.1.len() < 3 {
            entry.1.push(format!("{}: {}", r.device_id, r.reason));
        }
    }
    by_filter
        .into_iter()
        .map(|(filter, (n, examples))| format!("{n} refused by {filter} ({})", examples.join("; ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The names `--strategy` accepts besides specs.
pub fn known_strategy_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests;
