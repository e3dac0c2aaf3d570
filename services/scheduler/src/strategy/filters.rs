//! Filters: the hard constraints every strategy applies before it weighs anything, each with a
//! name and a reason explain can show.
use super::{DeviceKind, PlacementRequest, fleet::DeviceState, fleet::DeviceView, fleet::Fleet};

/// Why a device cannot take the load balancer: the filter that refused it and its reason.
pub type Refusal = (&'static str, String);

/// Runs every filter, cheapest first; the first refusal wins.
pub fn check(fleet: &Fleet, d: &DeviceView, request: &PlacementRequest) -> Result<(), Refusal> {
    if request.exclude.as_deref() == Some(&*d.id) {
        return Err(("exclude", "the device being left".into()));
    }
    if request.exclude_agent.as_deref() == Some(d.agent_id.as_str()) {
        return Err((
            "anti-affinity",
            format!("on host {}, with the other device of the pair", d.agent_id),
        ));
    }
    if d.state != DeviceState::Active {
        return Err(("state", format!("device is {}", d.state.as_str())));
    }
    if d.load >= d.capacity {
        return Err(("capacity", format!("full ({}/{})", d.load, d.capacity)));
    }
    if let Some(driver) = &request.driver
        && d.driver != *driver
    {
        return Err(("driver", format!("driver {} is not {driver}", d.driver)));
    }
    match request.kind {
        DeviceKind::Physical if d.is_virtual => {
            return Err(("kind", "virtual, physical required".into()));
        }
        DeviceKind::Virtual if !d.is_virtual => {
            return Err(("kind", "physical, virtual required".into()));
        }
        _ => {}
    }
    let missing: Vec<&str> = request
        .capabilities
        .iter()
        .filter(|c| !d.capabilities.contains(*c))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err((
            "capabilities",
            format!("driver {} lacks {}", d.driver, missing.join(", ")),
        ));
    }
    if let Some(vip) = request.vip_address
        && !d.vip_cidr.is_some_and(|range| range.contains(&vip))
    {
        return Err((
            "vip",
            match d.vip_cidr {
                Some(range) => format!("VIP {vip} is outside its range {range}"),
                None => format!("VIP {vip} asked for; the device has no VIP range"),
            },
        ));
    }
    for (k, v) in &request.required_labels {
        if d.labels.get(k) != Some(v) {
            return Err(("labels", format!("label {k}={v} missing")));
        }
    }
    if let Some((zone, labels)) = &request.zone {
        for (k, v) in labels {
            if d.labels.get(k) != Some(v) {
                return Err((
                    "availability-zone",
                    format!("not in availability zone {zone} (label {k}={v} missing)"),
                ));
            }
        }
    }
    match fleet.last_heartbeat(&d.agent_id) {
        Some(t) if t >= request.live_after_ms => Ok(()),
        Some(_) => Err(("agent", format!("agent {} not heard from", d.agent_id))),
        None => Err(("agent", format!("agent {} never registered", d.agent_id))),
    }
}
