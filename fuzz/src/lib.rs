//! What the fuzz targets run, one function per target, so the same code runs under libFuzzer
//! (`fuzz_targets/*.rs`), replays the seeds and regressions on stable (`tests/replay.rs`) and
//! makes the seeds (`examples/seeds.rs`).
//!
//! Inputs are protobuf, decoded with prost as the services decode their requests:
//! - `validate_requests`: one selector byte (which validator, modulo 8), then the request message.
//! - `render_haproxy`, `render_native`: a [`Device`], the load balancers of one device.
//!
//! Each function returns quietly for input the code under test refuses; it panics (and libFuzzer
//! reports a crash) only when the code under test panics or breaks a property checked here.

pub mod haproxy;
pub mod native;
pub mod validate;

pub use haproxy::render_haproxy;
pub use native::render_native;
pub use validate::validate_requests;

use lbaas::agent::v1::LoadBalancerConfig;

/// The desired state of one device, as the drivers get it (`Driver::apply(&[LoadBalancerConfig])`),
/// on the wire as `repeated lbaas.agent.v1.LoadBalancerConfig load_balancers = 1`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    #[prost(message, repeated, tag = "1")]
    pub load_balancers: Vec<LoadBalancerConfig>,
}

/// Which validator the first byte of a `validate_requests` input selects (modulo 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Request {
    LoadBalancer = 0,
    Listener = 1,
    Pool = 2,
    Member = 3,
    HealthMonitor = 4,
    L7Policy = 5,
    L7Rule = 6,
    Certificate = 7,
}

impl Request {
    pub fn from_byte(b: u8) -> Self {
        match b % 8 {
            0 => Self::LoadBalancer,
            1 => Self::Listener,
            2 => Self::Pool,
            3 => Self::Member,
            4 => Self::HealthMonitor,
            5 => Self::L7Policy,
            6 => Self::L7Rule,
            _ => Self::Certificate,
        }
    }

    /// A `validate_requests` input: the selector byte, then the encoded message.
    pub fn input(self, message: &impl prost::Message) -> Vec<u8> {
        let mut out = vec![self as u8];
        out.extend(message.encode_to_vec());
        out
    }
}
