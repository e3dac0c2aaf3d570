//! `lbctl loadbalancer healthmonitor create|list|show|set|unset|delete`.
use lbaas::api::v1 as pb;

use crate::{
    client::CallExt as _,
    common::{AdminState, Ctx, Mask},
    enums, render,
    wait::{self, Until, WaitArgs},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a health monitor for a pool.
    Create(Create),
    /// List health monitors.
    List {
        /// Only the monitor of this pool (name or id).
        #[arg(long)]
        pool: Option<String>,
        #[command(flatten)]
        filter: crate::common::ListFilterArgs,
    },
    /// Show a health monitor.
    Show {
        /// Health monitor (name or id).
        healthmonitor: String,
    },
    /// Change a health monitor.
    Set(Set),
    /// Clear settings of a health monitor.
    Unset(Unset),
    /// Delete a health monitor.
    Delete {
        /// Health monitor (name or id).
        healthmonitor: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// The options create and set share.
#[derive(clap::Args, Debug, Default)]
pub struct Settings {
    /// Set the health monitor name.
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds between checks.
    #[arg(long)]
    pub delay: Option<i32>,
    /// Seconds a check may take (at most the delay).
    #[arg(long)]
    pub timeout: Option<i32>,
    /// Successes in a row that bring a member up (1-10).
    #[arg(long)]
    pub max_retries: Option<i32>,
    /// Failures in a row that take a member down (1-10; default 3).
    #[arg(long)]
    pub max_retries_down: Option<i32>,
    /// HTTP(S) monitors: the path to request.
    #[arg(long)]
    pub url_path: Option<String>,
    /// HTTP(S) monitors: the codes that mean healthy (200, 200,202 or 200-204).
    #[arg(long)]
    pub expected_codes: Option<String>,
    /// HTTP(S) monitors: the method (GET, HEAD, ...).
    #[arg(long)]
    pub http_method: Option<String>,
    /// HTTP(S) monitors: the HTTP version of the check request, 1.0 (default) or 1.1.
    #[arg(long)]
    pub http_version: Option<f64>,
    /// HTTP(S) monitors: the Host header of the check request (needs --http-version 1.1).
    #[arg(long)]
    pub domain_name: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
}

impl Settings {
    fn apply(self, h: &mut pb::HealthMonitor, mask: &mut Mask) {
        mask.set("name", &mut h.name, self.name);
        mask.set("delay_s", &mut h.delay_s, self.delay);
        mask.set("timeout_s", &mut h.timeout_s, self.timeout);
        mask.set("max_retries", &mut h.max_retries, self.max_retries);
        mask.set(
            "max_retries_down",
            &mut h.max_retries_down,
            self.max_retries_down,
        );
        mask.set("url_path", &mut h.url_path, self.url_path);
        mask.set("expected_codes", &mut h.expected_codes, self.expected_codes);
        mask.set(
            "http_method",
            &mut h.http_method,
            self.http_method.map(|m| m.to_ascii_uppercase()),
        );
        mask.set("http_version", &mut h.http_version, self.http_version);
        mask.set("domain_name", &mut h.domain_name, self.domain_name);
        mask.set(
            "admin_state_up",
            &mut h.admin_state_up,
            self.admin.value().map(Some),
        );
    }
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// Pool to monitor (name or id).
    pub pool: String,
    /// The type of check: TCP, HTTP, HTTPS, TLS-HELLO or UDP-CONNECT (UDP pools).
    #[arg(long = "type", value_parser = enums::parse::<pb::HealthMonitorType>)]
    pub monitor_type: pb::HealthMonitorType,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// Health monitor (name or id).
    pub healthmonitor: String,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Unset {
    /// Health monitor (name or id).
    pub healthmonitor: String,
    /// Clear the name.
    #[arg(long)]
    pub name: bool,
    /// Back to the default (3).
    #[arg(long)]
    pub max_retries_down: bool,
    /// Back to the default (/).
    #[arg(long)]
    pub url_path: bool,
    /// Back to the default (200).
    #[arg(long)]
    pub expected_codes: bool,
    /// Back to the default (GET).
    #[arg(long)]
    pub http_method: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let api = &ctx.api;
    match command {
        Command::Create(args) => {
            let s = &args.settings;
            anyhow::ensure!(
                s.delay.is_some() && s.timeout.is_some() && s.max_retries.is_some(),
                "--delay, --timeout and --max-retries are required"
            );
            let pool = api.get_pool(&api.pool_id(&args.pool).await?).await?;
            let mut monitor = pb::HealthMonitor {
                pool_id: pool.id.clone(),
                r#type: args.monitor_type.into(),
                ..Default::default()
            };
            args.settings.apply(&mut monitor, &mut Mask::default());
            let created = api
                .lb
                .clone()
                .create_health_monitor(pb::CreateHealthMonitorRequest {
                    health_monitor: Some(monitor),
                    request_id: String::new(),
                })
                .await
                .api()?;
            let shown = if args.wait.wait {
                wait::maybe(api, &args.wait, &pool.loadbalancer_id, Until::Active).await?;
                api.get_health_monitor(&created.id).await?
            } else {
                created
            };
            ctx.out.show(&render::health_monitor(&shown));
        }
        Command::List { pool, filter } => {
            let pool = match pool {
                Some(p) => api.pool_id(&p).await?,
                None => String::new(),
            };
            let items: Vec<_> = api
                .health_monitors(&pool, filter.to_proto()?.as_ref())
                .await?
                .iter()
                .map(render::health_monitor)
                .collect();
            ctx.out.list(render::HEALTH_MONITOR_COLUMNS, &items);
        }
        Command::Show { healthmonitor } => {
            let id = api.health_monitor_id(&healthmonitor).await?;
            ctx.out
                .show(&render::health_monitor(&api.get_health_monitor(&id).await?));
        }
        Command::Set(args) => {
            let current = api
                .get_health_monitor(&api.health_monitor_id(&args.healthmonitor).await?)
                .await?;
            let mut patch = pb::HealthMonitor {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            args.settings.apply(&mut patch, &mut mask);
            update(ctx, &current, patch, mask, &args.wait).await?;
        }
        Command::Unset(args) => {
            let current = api
                .get_health_monitor(&api.health_monitor_id(&args.healthmonitor).await?)
                .await?;
            let mut patch = pb::HealthMonitor {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.clear("name", &mut patch.name, args.name);
            mask.clear(
                "max_retries_down",
                &mut patch.max_retries_down,
                args.max_retries_down,
            );
            mask.clear("url_path", &mut patch.url_path, args.url_path);
            mask.clear(
                "expected_codes",
                &mut patch.expected_codes,
                args.expected_codes,
            );
            mask.clear("http_method", &mut patch.http_method, args.http_method);
            update(ctx, &current, patch, mask, &args.wait).await?;
        }
        Command::Delete {
            healthmonitor,
            wait,
        } => {
            let current = api
                .get_health_monitor(&api.health_monitor_id(&healthmonitor).await?)
                .await?;
            api.lb
                .clone()
                .delete_health_monitor(pb::DeleteHealthMonitorRequest {
                    id: current.id.clone(),
                })
                .await
                .api()?;
            wait::maybe(api, &wait, &current.loadbalancer_id, Until::Active).await?;
        }
    }
    Ok(())
}

async fn update(
    ctx: &Ctx,
    current: &pb::HealthMonitor,
    patch: pb::HealthMonitor,
    mask: Mask,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let updated = ctx
        .api
        .lb
        .clone()
        .update_health_monitor(pb::UpdateHealthMonitorRequest {
            health_monitor: Some(patch),
            update_mask: Some(mask.finish()?),
        })
        .await
        .api()?;
    wait::maybe(&ctx.api, wait, &current.loadbalancer_id, Until::Active).await?;
    if ctx.out.explicit {
        let shown = if wait.wait {
            ctx.api.get_health_monitor(&current.id).await?
        } else {
            updated
        };
        ctx.out.show(&render::health_monitor(&shown));
    }
    Ok(())
}
