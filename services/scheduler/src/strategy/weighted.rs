//! Weighted strategies, as Nova's scheduler composes them: after the filters, every candidate gets
//! the sum of each weigher's value (0..1, in parts per million) times its integer multiplier, and
//! the highest sum wins; ties go to the lower relative load, then the lower id.
//!
//! `choose` does not score every device. Open devices are indexed by relative load (overall, per
//! driver, per network) and the only other weighers are bonuses held by few devices (the project's
//! own devices, devices on the requested networks) or bounded (jitter), so a threshold walk over
//! those ordered streams stops as soon as no unseen device can beat the best so far. `explain`
//! scores every device; the two always agree (a unit test checks it on random fleets).
use std::{collections::HashSet, sync::Arc};

use super::{
    Explained, PlacementRequest, PlacementStrategy, Scored, filters,
    fleet::{DeviceView, Fleet, LoadKey, PPM},
    seeded_hash,
};

/// One weigher: a value in 0..=PPM for a device and a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weigher {
    /// Free capacity relative to the device's capacity.
    Load,
    /// How much of the project the device already hosts: 0 for none, rising towards 1.
    /// A positive multiplier keeps a project together, a negative one spreads it.
    Affinity,
    /// The share of the requested networks the device is already attached to.
    Network,
    /// A seeded per-(load balancer, device) random value.
    Jitter,
}

impl Weigher {
    pub fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Affinity => "affinity",
            Self::Network => "network",
            Self::Jitter => "jitter",
        }
    }

    fn value(self, fleet: &Fleet, d: &DeviceView, request: &PlacementRequest, seed: u64) -> i64 {
        match self {
            Self::Load => PPM - d.load_ppm(),
            Self::Affinity => {
                let n = i64::from(fleet.project_load(&request.project_id, &d.id));
                PPM - PPM / (1 + n)
            }
            Self::Network => {
                if request.networks.is_empty() {
                    return 0;
                }
                let attached = request
                    .networks
                    .iter()
                    .filter(|n| d.networks.contains(*n))
                    .count();
                PPM * i64::try_from(attached).unwrap_or(0)
                    / i64::try_from(request.networks.len()).unwrap_or(1)
            }
            Self::Jitter => {
                let h = seeded_hash(seed, &[request.loadbalancer_id.as_bytes(), d.id.as_bytes()]);
                i64::try_from(h % (PPM as u64 + 1)).unwrap_or(0)
            }
        }
    }
}

/// Weighers with their multipliers, plus the seed for jitter.
#[derive(Debug, Clone)]
pub struct Weighted {
    pub terms: Vec<(Weigher, i64)>,
    pub seed: u64,
}

impl Weighted {
    fn multiplier(&self, w: Weigher) -> i64 {
        self.terms
            .iter()
            .filter(|(t, _)| *t == w)
            .map(|(_, m)| *m)
            .sum()
    }

    fn terms_of(
        &self,
        fleet: &Fleet,
        d: &DeviceView,
        request: &PlacementRequest,
    ) -> Vec<(Weigher, i64, i64)> {
        self.terms
            .iter()
            .map(|(w, m)| (*w, w.value(fleet, d, request, self.seed), *m))
            .collect()
    }

    fn score(&self, fleet: &Fleet, d: &DeviceView, request: &PlacementRequest) -> i64 {
        self.terms
            .iter()
            .map(|(w, m)| m.saturating_mul(w.value(fleet, d, request, self.seed)))
            .fold(0i64, i64::saturating_add)
    }
}

/// Better of two scored devices: higher score, then lower load key.
fn better(a: &(i64, LoadKey), b: &(i64, LoadKey)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

impl PlacementStrategy for Weighted {
    fn name(&self) -> String {
        self.terms
            .iter()
            .map(|(w, m)| match *m {
                1 => w.name().to_owned(),
                m => format!("{}*{m}", w.name()),
            })
            .collect::<Vec<_>>()
            .join("+")
    }

    fn choose(&self, fleet: &Fleet, request: &PlacementRequest) -> Option<Arc<str>> {
        let load_m = self.multiplier(Weigher::Load);
        let affinity_m = self.multiplier(Weigher::Affinity);
        let network_m = self.multiplier(Weigher::Network);
        let jitter_cap = self.multiplier(Weigher::Jitter).max(0).saturating_mul(PPM);
        let network_cap = network_m.max(0).saturating_mul(PPM);

        let mut best: Option<(i64, LoadKey)> = None;
        let mut seen: HashSet<&str> = HashSet::new();
        let consider = |id: &str, best: &mut Option<(i64, LoadKey)>| {
            let Some(d) = fleet.get(id) else { return };
            if filters::check(fleet, d, request).is_err() {
                return;
            }
            let scored = (self.score(fleet, d, request), d.load_key());
            if best.as_ref().is_none_or(|b| better(&scored, b)) {
                *best = Some(scored);
            }
        };

        // With a positive multiplier the project's own devices carry a bonus the streams' bounds
        // leave out: score them all first. A negative one only lowers a score, which the bounds
        // already allow for, so the walk meets those devices in turn.
        if affinity_m > 0 {
            for (id, _) in fleet.project_devices(&request.project_id) {
                if seen.insert(id) {
                    consider(id, &mut best);
                }
            }
        }
        // Ordered streams, each with the most any of its unseen devices can add beyond load: a
        // device on no requested network gains nothing from network affinity, and one that is
        // on one also appears (with the same key) in that network's stream.
        let mut streams: Vec<(
            std::iter::Peekable<std::collections::btree_set::Iter<'_, LoadKey>>,
            i64,
        )> = vec![(
            fleet.open(request.driver.as_deref()).iter().peekable(),
            jitter_cap,
        )];
        if network_m > 0 {
            for n in &request.networks {
                streams.push((fleet.open_on(n).iter().peekable(), jitter_cap + network_cap));
            }
        }
        if load_m < 0 {
            // Streams are in load order: with load counting against a device, no bound holds.
            for (stream, _) in &mut streams {
                for key in stream.by_ref() {
                    if seen.insert(&key.id) {
                        consider(&key.id, &mut best);
                    }
                }
            }
            return best.map(|(_, k)| k.id);
        }
        loop {
            let mut pick: Option<(usize, i64)> = None;
            for (i, (stream, cap)) in streams.iter_mut().enumerate() {
                let Some(key) = stream.peek() else { continue };
                let bound = load_m.saturating_mul(PPM - key.ppm).saturating_add(*cap);
                if let Some(b) = &best
                    && better(b, &(bound, (*key).clone()))
                {
                    continue;
                }
                if pick.is_none_or(|(_, p)| bound > p) {
                    pick = Some((i, bound));
                }
            }
            let Some((i, _)) = pick else { break };
            if let Some(key) = streams[i].0.next()
                && seen.insert(&key.id)
            {
                consider(&key.id, &mut best);
            }
        }
        best.map(|(_, k)| k.id)
    }

    fn explain(&self, fleet: &Fleet, request: &PlacementRequest) -> Explained {
        let mut eligible = Vec::new();
        let mut refused = Vec::new();
        for id in fleet.ids() {
            let Some(d) = fleet.get(id) else { continue };
            match filters::check(fleet, d, request) {
                Ok(()) => eligible.push((self.score(fleet, d, request), d.load_key(), d)),
                Err((filter, reason)) => refused.push(Scored {
                    device_id: id.to_string(),
                    eligible: false,
                    rejected_by: filter,
                    reason,
                    score: 0,
                    terms: Vec::new(),
                }),
            }
        }
        eligible.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let why = match (eligible.first(), eligible.get(1)) {
            (None, _) => super::nothing_fits(&refused),
            (Some((s, _, d)), None) => format!(
                "{} is the only eligible device (score {})",
                d.id,
                ppm_text(*s)
            ),
            (Some((s1, _, d1)), Some((s2, _, d2))) => {
                let t1 = self.terms_of(fleet, d1, request);
                let t2 = self.terms_of(fleet, d2, request);
                let ahead: Vec<String> = t1
                    .iter()
                    .zip(&t2)
                    .filter(|(a, b)| a.1 * a.2 > b.1 * b.2)
                    .map(|(a, _)| a.0.name().to_owned())
                    .collect();
                if s1 == s2 {
                    format!(
                        "{} and {} tie at {}; the lower relative load (then id) wins",
                        d1.id,
                        d2.id,
                        ppm_text(*s1)
                    )
                } else {
                    format!(
                        "{} scores {} against the runner-up {}'s {}, ahead on {}",
                        d1.id,
                        ppm_text(*s1),
                        d2.id,
                        ppm_text(*s2),
                        ahead.join(", ")
                    )
                }
            }
        };
        let chosen = eligible
            .first()
            .map(|(_, _, d)| d.id.to_string())
            .unwrap_or_default();
        let mut candidates: Vec<Scored> = eligible
            .iter()
            .map(|(s, _, d)| Scored {
                device_id: d.id.to_string(),
                eligible: true,
                rejected_by: "",
                reason: String::new(),
                score: *s,
                terms: self
                    .terms_of(fleet, d, request)
                    .into_iter()
                    .map(|(w, v, m)| (w.name(), v, m))
                    .collect(),
            })
            .collect();
        candidates.extend(refused);
        Explained {
            strategy: self.name(),
            candidates,
            chosen,
            why,
        }
    }
}

/// A score in parts per million as a decimal.
pub fn ppm_text(score: i64) -> String {
    format!("{:.3}", score as f64 / PPM as f64)
}
