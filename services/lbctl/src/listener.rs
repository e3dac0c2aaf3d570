//! `lbctl loadbalancer listener create|list|show|set|unset|delete|stats show`.
use lbaas::api::v1 as pb;

use crate::{
    client::CallExt as _,
    common::{
        AdminState, CreateTags, Ctx, Mask, SetTags, TlsOptionArgs, UnsetTags, UnsetTlsOptions,
        insert_headers,
    },
    enums, render,
    wait::{self, Until, WaitArgs},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a listener.
    Create(Create),
    /// List listeners.
    List {
        /// Only the listeners of this load balancer (name or id).
        #[arg(long)]
        loadbalancer: Option<String>,
        /// Only listeners with this name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        filter: crate::common::ListFilterArgs,
    },
    /// Show a listener.
    Show {
        /// Listener (name or id).
        listener: String,
    },
    /// Change a listener.
    Set(Set),
    /// Clear settings of a listener.
    Unset(Unset),
    /// Delete a listener.
    Delete {
        /// Listener (name or id).
        listener: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Traffic counters of a listener.
    #[command(subcommand)]
    Stats(StatsCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum StatsCommand {
    /// Show the traffic counters.
    Show {
        /// Listener (name or id).
        listener: String,
    },
}

/// The options create and set share.
#[derive(clap::Args, Debug, Default)]
pub struct Settings {
    /// Set the listener name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set the description.
    #[arg(long)]
    pub description: Option<String>,
    /// Maximum connections (-1: unlimited).
    #[arg(long, allow_negative_numbers = true)]
    pub connection_limit: Option<i32>,
    /// The pool requests go to when no L7 policy decides (name or id).
    #[arg(long)]
    pub default_pool: Option<String>,
    /// TERMINATED_HTTPS: the certificate served by default (a certificate id or name).
    #[arg(long, value_name = "CERTIFICATE")]
    pub default_tls_container_ref: Option<String>,
    /// TERMINATED_HTTPS: more certificates, chosen by SNI.
    #[arg(long, value_name = "CERTIFICATE", num_args = 1..)]
    pub sni_container_refs: Option<Vec<String>>,
    /// Headers to insert: X-Forwarded-For=true,X-Forwarded-Port=true,X-Forwarded-Proto=true.
    #[arg(long, value_name = "HEADER=VALUE,...")]
    pub insert_headers: Vec<String>,
    /// Frontend client inactivity timeout in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_client_data: Option<i32>,
    /// Backend member connection timeout in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_member_connect: Option<i32>,
    /// Backend member inactivity timeout in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_member_data: Option<i32>,
    /// A CIDR allowed to connect (repeat for more); everyone when none.
    #[arg(long = "allowed-cidr", value_name = "CIDR")]
    pub allowed_cidrs: Vec<String>,
    /// TERMINATED_HTTPS: ALPN, TLS versions and ciphers offered to clients.
    #[command(flatten)]
    pub tls: TlsOptionArgs,
    /// TERMINATED_HTTPS: send Strict-Transport-Security with this max-age (seconds).
    #[arg(long, value_name = "SECONDS")]
    pub hsts_max_age: Option<i32>,
    /// With --hsts-max-age: add includeSubDomains.
    #[arg(long)]
    pub hsts_include_subdomains: bool,
    /// With --hsts-max-age: add preload.
    #[arg(long)]
    pub hsts_preload: bool,
    #[command(flatten)]
    pub admin: AdminState,
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// Load balancer for the listener (name or id).
    pub loadbalancer: String,
    /// The protocol: TCP, HTTP, HTTPS, TERMINATED_HTTPS or UDP.
    #[arg(long, value_parser = enums::parse::<pb::Protocol>)]
    pub protocol: pb::Protocol,
    /// The port clients connect to.
    #[arg(long)]
    pub protocol_port: i32,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub tags: CreateTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// Listener (name or id).
    pub listener: String,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub tags: SetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Unset {
    /// Listener (name or id).
    pub listener: String,
    /// Clear the name.
    #[arg(long)]
    pub name: bool,
    /// Clear the description.
    #[arg(long)]
    pub description: bool,
    /// Back to unlimited connections.
    #[arg(long)]
    pub connection_limit: bool,
    /// Clear the default pool.
    #[arg(long)]
    pub default_pool: bool,
    /// Clear the default certificate.
    #[arg(long)]
    pub default_tls_container_ref: bool,
    /// Clear the SNI certificates.
    #[arg(long)]
    pub sni_container_refs: bool,
    /// Insert no headers.
    #[arg(long)]
    pub insert_headers: bool,
    /// Back to the default client timeout.
    #[arg(long)]
    pub timeout_client_data: bool,
    /// Back to the default member connect timeout.
    #[arg(long)]
    pub timeout_member_connect: bool,
    /// Back to the default member data timeout.
    #[arg(long)]
    pub timeout_member_data: bool,
    /// Allow everyone again.
    #[arg(long)]
    pub allowed_cidrs: bool,
    /// Send no Strict-Transport-Security header.
    #[arg(long)]
    pub hsts: bool,
    #[command(flatten)]
    pub tls: UnsetTlsOptions,
    #[command(flatten)]
    pub tags: UnsetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

impl Settings {
    /// Writes the given settings into `l`, recording each in `mask`; names become ids.
    async fn apply(self, ctx: &Ctx, l: &mut pb::Listener, mask: &mut Mask) -> anyhow::Result<()> {
        mask.set("name", &mut l.name, self.name);
        mask.set("description", &mut l.description, self.description);
        mask.set(
            "connection_limit",
            &mut l.connection_limit,
            self.connection_limit,
        );
        if let Some(pool) = self.default_pool {
            let id = ctx.api.pool_id(&pool).await?;
            mask.set("default_pool_id", &mut l.default_pool_id, Some(id));
        }
        if let Some(cert) = self.default_tls_container_ref {
            let id = ctx.api.certificate_id(&cert).await?;
            mask.set(
                "default_tls_container_ref",
                &mut l.default_tls_container_ref,
                Some(id),
            );
        }
        if let Some(certs) = self.sni_container_refs {
            let mut ids = Vec::with_capacity(certs.len());
            for c in certs {
                ids.push(ctx.api.certificate_id(&c).await?);
            }
            mask.set("sni_container_refs", &mut l.sni_container_refs, Some(ids));
        }
        if !self.insert_headers.is_empty() {
            let headers = insert_headers(&self.insert_headers)?;
            mask.set("insert_headers", &mut l.insert_headers, Some(headers));
        }
        mask.set(
            "timeout_client_data_ms",
            &mut l.timeout_client_data_ms,
            self.timeout_client_data,
        );
        mask.set(
            "timeout_member_connect_ms",
            &mut l.timeout_member_connect_ms,
            self.timeout_member_connect,
        );
        mask.set(
            "timeout_member_data_ms",
            &mut l.timeout_member_data_ms,
            self.timeout_member_data,
        );
        if !self.allowed_cidrs.is_empty() {
            mask.set(
                "allowed_cidrs",
                &mut l.allowed_cidrs,
                Some(self.allowed_cidrs),
            );
        }
        self.tls.apply(
            (
                &mut l.alpn_protocols,
                &mut l.tls_versions,
                &mut l.tls_ciphers,
            ),
            mask,
        );
        if self.hsts_max_age.is_some() || self.hsts_include_subdomains || self.hsts_preload {
            mask.set("hsts_max_age", &mut l.hsts_max_age, Some(self.hsts_max_age));
            mask.set(
                "hsts_include_subdomains",
                &mut l.hsts_include_subdomains,
                Some(self.hsts_include_subdomains),
            );
            mask.set("hsts_preload", &mut l.hsts_preload, Some(self.hsts_preload));
        }
        mask.set(
            "admin_state_up",
            &mut l.admin_state_up,
            self.admin.value().map(Some),
        );
        Ok(())
    }
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let api = &ctx.api;
    match command {
        Command::Create(args) => {
            let mut listener = pb::Listener {
                loadbalancer_id: api.lb_id(&args.loadbalancer).await?,
                protocol: args.protocol.into(),
                protocol_port: args.protocol_port,
                tags: args.tags.tags,
                ..Default::default()
            };
            args.settings
                .apply(ctx, &mut listener, &mut Mask::default())
                .await?;
            let created = api
                .lb
                .clone()
                .create_listener(pb::CreateListenerRequest {
                    listener: Some(listener),
                    request_id: String::new(),
                })
                .await
                .api()?;
            let shown = if args.wait.wait {
                wait::maybe(api, &args.wait, &created.loadbalancer_id, Until::Active).await?;
                api.get_listener(&created.id).await?
            } else {
                created
            };
            ctx.out.show(&render::listener(&shown));
        }
        Command::List {
            loadbalancer,
            name,
            filter,
        } => {
            let lb = match loadbalancer {
                Some(lb) => api.lb_id(&lb).await?,
                None => String::new(),
            };
            let items: Vec<_> = api
                .listeners(&lb, filter.to_proto()?.as_ref())
                .await?
                .iter()
                .filter(|l| name.as_ref().is_none_or(|n| &l.name == n))
                .map(render::listener)
                .collect();
            ctx.out.list(render::LISTENER_COLUMNS, &items);
        }
        Command::Show { listener } => {
            let id = api.listener_id(&listener).await?;
            ctx.out
                .show(&render::listener(&api.get_listener(&id).await?));
        }
        Command::Set(args) => {
            let current = api
                .get_listener(&api.listener_id(&args.listener).await?)
                .await?;
            let mut patch = pb::Listener {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            args.settings.apply(ctx, &mut patch, &mut mask).await?;
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &current, patch, mask, &args.wait).await?;
        }
        Command::Unset(args) => {
            let current = api
                .get_listener(&api.listener_id(&args.listener).await?)
                .await?;
            let mut patch = pb::Listener {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.clear("name", &mut patch.name, args.name);
            mask.clear("description", &mut patch.description, args.description);
            if args.connection_limit {
                mask.set("connection_limit", &mut patch.connection_limit, Some(-1));
            }
            mask.clear(
                "default_pool_id",
                &mut patch.default_pool_id,
                args.default_pool,
            );
            mask.clear(
                "default_tls_container_ref",
                &mut patch.default_tls_container_ref,
                args.default_tls_container_ref,
            );
            mask.clear(
                "sni_container_refs",
                &mut patch.sni_container_refs,
                args.sni_container_refs,
            );
            mask.clear(
                "insert_headers",
                &mut patch.insert_headers,
                args.insert_headers,
            );
            mask.clear(
                "timeout_client_data_ms",
                &mut patch.timeout_client_data_ms,
                args.timeout_client_data,
            );
            mask.clear(
                "timeout_member_connect_ms",
                &mut patch.timeout_member_connect_ms,
                args.timeout_member_connect,
            );
            mask.clear(
                "timeout_member_data_ms",
                &mut patch.timeout_member_data_ms,
                args.timeout_member_data,
            );
            mask.clear(
                "allowed_cidrs",
                &mut patch.allowed_cidrs,
                args.allowed_cidrs,
            );
            args.tls.apply(
                (
                    &mut patch.alpn_protocols,
                    &mut patch.tls_versions,
                    &mut patch.tls_ciphers,
                ),
                &mut mask,
            );
            mask.clear("hsts_max_age", &mut patch.hsts_max_age, args.hsts);
            mask.clear(
                "hsts_include_subdomains",
                &mut patch.hsts_include_subdomains,
                args.hsts,
            );
            mask.clear("hsts_preload", &mut patch.hsts_preload, args.hsts);
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &current, patch, mask, &args.wait).await?;
        }
        Command::Delete { listener, wait } => {
            let current = api.get_listener(&api.listener_id(&listener).await?).await?;
            api.lb
                .clone()
                .delete_listener(pb::DeleteListenerRequest {
                    id: current.id.clone(),
                })
                .await
                .api()?;
            wait::maybe(api, &wait, &current.loadbalancer_id, Until::Active).await?;
        }
        Command::Stats(StatsCommand::Show { listener }) => {
            let id = api.listener_id(&listener).await?;
            let stats = api
                .lb
                .clone()
                .get_listener_stats(pb::GetListenerStatsRequest { id })
                .await
                .api()?;
            ctx.out.show(&render::stats(&stats));
        }
    }
    Ok(())
}

async fn update(
    ctx: &Ctx,
    current: &pb::Listener,
    patch: pb::Listener,
    mask: Mask,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let updated = ctx
        .api
        .lb
        .clone()
        .update_listener(pb::UpdateListenerRequest {
            listener: Some(patch),
            update_mask: Some(mask.finish()?),
        })
        .await
        .api()?;
    wait::maybe(&ctx.api, wait, &current.loadbalancer_id, Until::Active).await?;
    if ctx.out.explicit {
        let shown = if wait.wait {
            ctx.api.get_listener(&current.id).await?
        } else {
            updated
        };
        ctx.out.show(&render::listener(&shown));
    }
    Ok(())
}
