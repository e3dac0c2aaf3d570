//! The proto enums by their short names (`HTTP`, `ACTIVE`, `ROUND_ROBIN`): printing them and
//! parsing command line values into them.
use lbaas::api::v1 as pb;

use crate::output::Val;

/// A generated proto enum whose value names share a prefix (`PROTOCOL_HTTP`).
pub trait ProtoEnum: Sized + Copy + TryFrom<i32> + Into<i32> + Send + Sync + 'static {
    const PREFIX: &'static str;
    fn full_name(self) -> &'static str;
    fn from_full_name(name: &str) -> Option<Self>;
}

macro_rules! proto_enums {
    ($($ty:ident => $prefix:literal),* $(,)?) => {
        $(impl ProtoEnum for pb::$ty {
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
    ProvisioningStatus => "PROVISIONING_STATUS_",
    OperatingStatus => "OPERATING_STATUS_",
    Protocol => "PROTOCOL_",
    LbAlgorithm => "LB_ALGORITHM_",
    HealthMonitorType => "HEALTH_MONITOR_TYPE_",
    SessionPersistenceType => "SESSION_PERSISTENCE_TYPE_",
    L7PolicyAction => "L7_POLICY_ACTION_",
    L7RuleType => "L7_RULE_TYPE_",
    L7RuleCompareType => "L7_RULE_COMPARE_TYPE_",
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
    (1..)
        .map_while(|i| E::try_from(i).ok())
        .map(|e: E| name::<E>(e.into()))
        .collect()
}

/// Parses a short name, case-insensitively, with `-` for `_` (openstack's `TLS-HELLO`).
pub fn parse<E: ProtoEnum>(s: &str) -> Result<E, String> {
    let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
    E::from_full_name(&format!("{}{wanted}", E::PREFIX))
        .filter(|e| (*e).into() != 0)
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
    }
}
