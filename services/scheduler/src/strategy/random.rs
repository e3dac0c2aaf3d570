//! Random placement, deterministic given the seed: a load balancer's seeded draws pick devices from
//! the id-ordered fleet until one passes the filters (after a few misses, the first eligible device
//! after the first draw). Constant time while most devices are eligible.
use std::sync::Arc;

use super::{
    Explained, PlacementRequest, PlacementStrategy, Scored, filters, fleet::Fleet, seeded_hash,
};

const DRAWS: u64 = 32;

#[derive(Debug, Clone)]
pub struct Random {
    pub seed: u64,
}

impl Random {
    /// The chosen index and how it was found.
    fn draw(&self, fleet: &Fleet, request: &PlacementRequest) -> Option<(usize, String)> {
        let ids = fleet.ids();
        let n = ids.len();
        if n == 0 {
            return None;
        }
        let eligible = |i: usize| {
            fleet
                .get(&ids[i])
                .is_some_and(|d| filters::check(fleet, d, request).is_ok())
        };
        let at = |draw: u64| {
            let h = seeded_hash(
                self.seed,
                &[request.loadbalancer_id.as_bytes(), &draw.to_le_bytes()],
            );
            usize::try_from(h % n as u64).unwrap_or(0)
        };
        for draw in 0..DRAWS {
            let i = at(draw);
            if eligible(i) {
                return Some((
                    i,
                    format!("seeded draw {} of {DRAWS} landed on it", draw + 1),
                ));
            }
        }
        let start = at(0);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| eligible(i))
            .map(|i| {
                (
                    i,
                    format!("{DRAWS} draws missed; the first eligible device after the first draw"),
                )
            })
    }
}

impl PlacementStrategy for Random {
    fn name(&self) -> String {
        "random".into()
    }

    fn choose(&self, fleet: &Fleet, request: &PlacementRequest) -> Option<Arc<str>> {
        self.draw(fleet, request)
            .map(|(i, _)| fleet.ids()[i].clone())
    }

    fn explain(&self, fleet: &Fleet, request: &PlacementRequest) -> Explained {
        let drawn = self.draw(fleet, request);
        let chosen = drawn
            .as_ref()
            .map(|(i, _)| fleet.ids()[*i].to_string())
            .unwrap_or_default();
        let mut eligible = Vec::new();
        let mut refused = Vec::new();
        for id in fleet.ids() {
            let Some(d) = fleet.get(id) else { continue };
            match filters::check(fleet, d, request) {
                Ok(()) => eligible.push(Scored {
                    device_id: id.to_string(),
                    eligible: true,
                    rejected_by: "",
                    reason: String::new(),
                    score: i64::from(**id == *chosen),
                    terms: Vec::new(),
                }),
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
        eligible.sort_by_key(|s| std::cmp::Reverse(s.score));
        let why = match drawn {
            Some((_, how)) => format!("{chosen}: {how}"),
            None => super::nothing_fits(&refused),
        };
        eligible.extend(refused);
        Explained {
            strategy: self.name(),
            candidates: eligible,
            chosen,
            why,
        }
    }
}
