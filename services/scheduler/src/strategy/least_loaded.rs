//! Least-loaded: the device with the lowest load relative to its capacity wins; ties go to the
//! lower absolute load, then to the device id so the choice is deterministic.
use std::cmp::Ordering;

use super::{Candidate, PlacementRequest, PlacementStrategy};

pub struct LeastLoaded;

impl PlacementStrategy for LeastLoaded {
    fn name(&self) -> &'static str {
        "least-loaded"
    }

    fn rank(&self, _request: &PlacementRequest, candidates: &[Candidate]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&candidates[a], &candidates[b]);
            // Compare load/capacity without floats: a.load * b.capacity vs b.load * a.capacity.
            let relative = (i128::from(a.load) * i128::from(b.capacity.max(1)))
                .cmp(&(i128::from(b.load) * i128::from(a.capacity.max(1))));
            match relative {
                Ordering::Equal => a
                    .load
                    .cmp(&b.load)
                    .then_with(|| a.device_id.cmp(&b.device_id)),
                other => other,
            }
        });
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, load: i64, capacity: i64) -> Candidate {
        Candidate {
            device_id: id.into(),
            driver: "noop".into(),
            capacity,
            load,
        }
    }

    #[test]
    fn lowest_relative_load_wins() {
        let request = PlacementRequest {
            loadbalancer_id: "lb".into(),
            project_id: "p".into(),
        };
        let candidates = [
            candidate("a", 5, 10),
            candidate("b", 5, 100),
            candidate("c", 0, 1),
        ];
        assert_eq!(LeastLoaded.rank(&request, &candidates), vec![2, 1, 0]);
        let tied = [candidate("b", 1, 10), candidate("a", 1, 10)];
        assert_eq!(LeastLoaded.rank(&request, &tied), vec![1, 0]);
    }
}
