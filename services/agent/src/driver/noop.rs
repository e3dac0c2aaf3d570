//! The noop driver: accepts every configuration and keeps it in memory, for tests and dry runs.
use std::sync::Mutex;

use lbaas::agent::v1::LoadBalancerConfig;

use super::{DeviceHealth, Driver, DriverError, DriverOptions};

/// Remembers the last configuration it was given and nothing else.
pub struct NoopDriver {
    applied: Mutex<Vec<LoadBalancerConfig>>,
    delay: std::time::Duration,
}

impl NoopDriver {
    pub fn new(options: &DriverOptions) -> Self {
        Self {
            applied: Mutex::new(Vec::new()),
            delay: options.noop_apply_delay,
        }
    }

    /// The load balancers of the last apply.
    pub fn applied(&self) -> Vec<LoadBalancerConfig> {
        self.applied.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Driver for NoopDriver {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn capabilities(&self) -> Vec<String> {
        lbaas::capability::all()
    }

    async fn start(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn apply(&self, desired: &[LoadBalancerConfig]) -> Result<(), DriverError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Ok(mut applied) = self.applied.lock() {
            *applied = desired.to_vec();
        }
        Ok(())
    }

    async fn health(&self) -> DeviceHealth {
        DeviceHealth {
            healthy: true,
            detail: "noop".into(),
        }
    }

    async fn stop(&self) -> Result<(), DriverError> {
        Ok(())
    }
}
