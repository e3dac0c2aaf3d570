//! The proto enums by their short names (`HTTP`, `ACTIVE`, `ROUND_ROBIN`): printing them and
//! parsing command line values into them.
use lbaas::{api::v1 as pb, scheduler::v1 as spb};

use crate::output::Val;

/// A generated proto enum whose value names share a prefix (`PROTOCOL_HTTP`).
pub trait ProtoEnum: Sized + Copy + TryFrom<i32> + Into<i32> + Send + Sync + 'static {
    const PREFIX: &'static str;
    fn full_name(self) -> &'static str;
    fn from_full_name(name: &str) -> Option<Self>;
}

macro_rules! proto_enums {
    ($($ty:ty => $prefix:literal),* $(,)?) => {
        $(impl ProtoEnum for $ty {
            const PREFIX: &'static str = $prefix;
            fn full_name(self) -> &'static str {
                self.as_str_name()
            }
            fn from_full_name(name: &str) -> Option<Self> {
                Self::from_str_name(name)
            }
        })*
    };
}

proto_enums! {
    pb::ProvisioningStatus => "PROVISIONING_STATUS_",
    pb::OperatingStatus => "OPERATING_STATUS_",
    pb::Protocol => "PROTOCOL_",
    pb::LbAlgorithm => "LB_ALGORITHM_",
    pb::HealthMonitorType => "HEALTH_MONITOR_TYPE_",
    pb::SessionPersistenceType => "SESSION_PERSISTENCE_TYPE_",
    pb::L7PolicyAction => "L7_POLICY_ACTION_",
    pb::L7RuleType => "L7_RULE_TYPE_",
    pb::L7RuleCompareType => "L7_RULE_COMPARE_TYPE_",
    spb::DeviceState => "DEVICE_STATE_",
    spb::DeviceKind => "DEVICE_KIND_",
    spb::Topology => "TOPOLOGY_",
}

/// Whether a value is the "not set" one (`PROTOCOL_UNSPECIFIED`); a zero value with a real
/// meaning (`DEVICE_KIND_ANY`) is not.
fn unspecified<E: ProtoEnum>(e: E) -> bool {
    e.full_name().ends_with("_UNSPECIFIED")
}

/// The short name of a value (`HTTP`); the number when the value is unknown to this build.
pub fn name<E: ProtoEnum>(value: i32) -> String {
    match E::try_from(value) {
        Ok(e) => e
            .full_name()
            .strip_prefix(E::PREFIX)
            .unwrap_or(e.full_name())
            .to_owned(),
        Err(_) => value.to_string(),
    }
}

/// A value for printing: its short name.
pub fn val<E: ProtoEnum>(value: i32) -> Val {
    Val::Str(name::<E>(value))
}

/// Every short name but UNSPECIFIED, in proto order.
pub fn names<E: ProtoEnum>() -> Vec<String> {
    (0..)
        .map_while(|i| E::try_from(i).ok())
        .filter(|e: &E| !unspecified(*e))
        .map(|e: E| name::<E>(e.into()))
        .collect()
}

/// Parses a short name, case-insensitively, with `-` for `_` (openstack's `TLS-HELLO`).
pub fn parse<E: ProtoEnum>(s: &str) -> Result<E, String> {
    let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
    E::from_full_name(&format!("{}{wanted}", E::PREFIX))
        .filter(|e| !unspecified(*e))
        .ok_or_else(|| format!("{s:?} is not one of {}", names::<E>().join(", ")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_names_both_ways() {
        assert_eq!(name::<pb::Protocol>(pb::Protocol::Http as i32), "HTTP");
        assert_eq!(name::<pb::ProvisioningStatus>(99), "99");
        assert_eq!(
            parse::<pb::Protocol>("terminated_https").unwrap(),
            pb::Protocol::TerminatedHttps
        );
        assert_eq!(
            parse::<pb::HealthMonitorType>("TLS-HELLO").unwrap(),
            pb::HealthMonitorType::TlsHello
        );
        let err = parse::<pb::LbAlgorithm>("RANDOM").unwrap_err();
        assert_eq!(
            err,
            "\"RANDOM\" is not one of ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP"
        );
        assert!(parse::<pb::LbAlgorithm>("UNSPECIFIED").is_err());
        // A zero value with a meaning of its own parses and is listed.
        assert_eq!(
            parse::<spb::DeviceKind>("any").unwrap(),
            spb::DeviceKind::Any
        );
        assert_eq!(names::<spb::DeviceKind>(), ["ANY", "PHYSICAL", "VIRTUAL"]);
        assert_eq!(names::<spb::DeviceState>(), ["ACTIVE", "DRAINING", "DOWN"]);
        assert_eq!(name::<spb::DeviceState>(2), "DRAINING");
    }
}
