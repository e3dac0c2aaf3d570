//! `lbctl loadbalancer pool create|list|show|set|unset|delete`.
use lbaas::api::v1 as pb;

use crate::{
    client::CallExt as _,
    common::{
        AdminState, CreateTags, Ctx, Mask, SetTags, TlsOptionArgs, UnsetTags, UnsetTlsOptions,
        session_persistence,
    },
    enums, render,
    wait::{self, Until, WaitArgs},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a pool.
    Create(Create),
    /// List pools.
    List {
        /// Only the pools of this load balancer (name or id).
        #[arg(long)]
        loadbalancer: Option<String>,
        /// Only pools with this name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        filter: crate::common::ListFilterArgs,
    },
    /// Show a pool.
    Show {
        /// Pool (name or id).
        pool: String,
    },
    /// Change a pool.
    Set(Set),
    /// Clear settings of a pool.
    Unset(Unset),
    /// Delete a pool.
    Delete {
        /// Pool (name or id).
        pool: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `--enable-tls` / `--disable-tls`.
#[derive(clap::Args, Debug, Default)]
pub struct Tls {
    /// Connect to members over TLS (HTTP pools).
    #[arg(long, conflicts_with = "disable_tls")]
    pub enable_tls: bool,
    /// Connect to members in the clear.
    #[arg(long)]
    pub disable_tls: bool,
}

impl Tls {
    fn value(&self) -> Option<bool> {
        match (self.enable_tls, self.disable_tls) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("parent").required(true).multiple(true).args(["listener", "loadbalancer"])))]
pub struct Create {
    /// Set pool name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set pool description.
    #[arg(long)]
    pub description: Option<String>,
    /// The protocol to the members: TCP, HTTP, HTTPS or UDP.
    #[arg(long, value_parser = enums::parse::<pb::Protocol>)]
    pub protocol: pb::Protocol,
    /// The listener this is the default pool of (name or id).
    #[arg(long)]
    pub listener: Option<String>,
    /// The load balancer of the pool (name or id); the listener's when --listener is given.
    #[arg(long)]
    pub loadbalancer: Option<String>,
    /// The algorithm: ROUND_ROBIN, LEAST_CONNECTIONS or SOURCE_IP.
    #[arg(long, value_parser = enums::parse::<pb::LbAlgorithm>)]
    pub lb_algorithm: pb::LbAlgorithm,
    /// type=SOURCE_IP|HTTP_COOKIE|APP_COOKIE[,cookie_name=NAME].
    #[arg(long, value_name = "type=TYPE[,cookie_name=NAME]", value_parser = session_persistence)]
    pub session_persistence: Option<pb::SessionPersistence>,
    #[command(flatten)]
    pub tls: Tls,
    /// ALPN to members (with --enable-tls, or `h2` alone for HTTP/2 in clear text), TLS versions
    /// and ciphers.
    #[command(flatten)]
    pub tls_options: TlsOptionArgs,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: CreateTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// Pool (name or id).
    pub pool: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// The algorithm: ROUND_ROBIN, LEAST_CONNECTIONS or SOURCE_IP.
    #[arg(long, value_parser = enums::parse::<pb::LbAlgorithm>)]
    pub lb_algorithm: Option<pb::LbAlgorithm>,
    /// type=SOURCE_IP|HTTP_COOKIE|APP_COOKIE[,cookie_name=NAME].
    #[arg(long, value_name = "type=TYPE[,cookie_name=NAME]", value_parser = session_persistence)]
    pub session_persistence: Option<pb::SessionPersistence>,
    #[command(flatten)]
    pub tls: Tls,
    #[command(flatten)]
    pub tls_options: TlsOptionArgs,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: SetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Unset {
    /// Pool (name or id).
    pub pool: String,
    /// Clear the name.
    #[arg(long)]
    pub name: bool,
    /// Clear the description.
    #[arg(long)]
    pub description: bool,
    /// No session persistence.
    #[arg(long)]
    pub session_persistence: bool,
    #[command(flatten)]
    pub tls_options: UnsetTlsOptions,
    #[command(flatten)]
    pub tags: UnsetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let api = &ctx.api;
    match command {
        Command::Create(args) => {
            let listener_id = match &args.listener {
                Some(l) => api.listener_id(l).await?,
                None => String::new(),
            };
            let loadbalancer_id = match (&args.loadbalancer, listener_id.is_empty()) {
                (Some(lb), _) => api.lb_id(lb).await?,
                (None, false) => api.get_listener(&listener_id).await?.loadbalancer_id,
                (None, true) => anyhow::bail!("give --listener or --loadbalancer"),
            };
            let pool = pb::Pool {
                loadbalancer_id,
                listener_id,
                name: args.name.unwrap_or_default(),
                description: args.description.unwrap_or_default(),
                protocol: args.protocol.into(),
                lb_algorithm: args.lb_algorithm.into(),
                admin_state_up: args.admin.value(),
                tags: args.tags.tags,
                session_persistence: args.session_persistence,
                tls_enabled: args.tls.value().unwrap_or(false),
                alpn_protocols: args.tls_options.alpn_protocols,
                tls_versions: args.tls_options.tls_versions,
                tls_ciphers: args.tls_options.tls_ciphers.unwrap_or_default(),
                ..Default::default()
            };
            let created = api
                .lb
                .clone()
                .create_pool(pb::CreatePoolRequest {
                    pool: Some(pool),
                    request_id: String::new(),
                })
                .await
                .api()?;
            let shown = if args.wait.wait {
                wait::maybe(api, &args.wait, &created.loadbalancer_id, Until::Active).await?;
                api.get_pool(&created.id).await?
            } else {
                created
            };
            ctx.out.show(&render::pool(&shown));
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
                .pools(&lb, filter.to_proto()?.as_ref())
                .await?
                .iter()
                .filter(|p| name.as_ref().is_none_or(|n| &p.name == n))
                .map(render::pool)
                .collect();
            ctx.out.list(render::POOL_COLUMNS, &items);
        }
        Command::Show { pool } => {
            let id = api.pool_id(&pool).await?;
            ctx.out.show(&render::pool(&api.get_pool(&id).await?));
        }
        Command::Set(args) => {
            let current = api.get_pool(&api.pool_id(&args.pool).await?).await?;
            let mut patch = pb::Pool {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.set("name", &mut patch.name, args.name);
            mask.set("description", &mut patch.description, args.description);
            mask.set(
                "lb_algorithm",
                &mut patch.lb_algorithm,
                args.lb_algorithm.map(Into::into),
            );
            mask.set(
                "session_persistence",
                &mut patch.session_persistence,
                args.session_persistence.map(Some),
            );
            mask.set("tls_enabled", &mut patch.tls_enabled, args.tls.value());
            args.tls_options.apply(
                (
                    &mut patch.alpn_protocols,
                    &mut patch.tls_versions,
                    &mut patch.tls_ciphers,
                ),
                &mut mask,
            );
            mask.set(
                "admin_state_up",
                &mut patch.admin_state_up,
                args.admin.value().map(Some),
            );
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &current, patch, mask, &args.wait).await?;
        }
        Command::Unset(args) => {
            let current = api.get_pool(&api.pool_id(&args.pool).await?).await?;
            let mut patch = pb::Pool {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.clear("name", &mut patch.name, args.name);
            mask.clear("description", &mut patch.description, args.description);
            mask.clear(
                "session_persistence",
                &mut patch.session_persistence,
                args.session_persistence,
            );
            args.tls_options.apply(
                (
                    &mut patch.alpn_protocols,
                    &mut patch.tls_versions,
                    &mut patch.tls_ciphers,
                ),
                &mut mask,
            );
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &current, patch, mask, &args.wait).await?;
        }
        Command::Delete { pool, wait } => {
            let current = api.get_pool(&api.pool_id(&pool).await?).await?;
            api.lb
                .clone()
                .delete_pool(pb::DeletePoolRequest {
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
    current: &pb::Pool,
    patch: pb::Pool,
    mask: Mask,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let updated = ctx
        .api
        .lb
        .clone()
        .update_pool(pb::UpdatePoolRequest {
            pool: Some(patch),
            update_mask: Some(mask.finish()?),
        })
        .await
        .api()?;
    wait::maybe(&ctx.api, wait, &current.loadbalancer_id, Until::Active).await?;
    if ctx.out.explicit {
        let shown = if wait.wait {
            ctx.api.get_pool(&current.id).await?
        } else {
            updated
        };
        ctx.out.show(&render::pool(&shown));
    }
    Ok(())
}
