//! `lbctl loadbalancer member create|list|show|set|unset|delete`; like openstack's, every command
//! names the pool first.
use lbaas::api::v1 as pb;

use crate::{
    client::CallExt as _,
    common::{AdminState, CreateTags, Ctx, Mask, SetTags, UnsetTags},
    render,
    wait::{self, Until, WaitArgs},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Add a member to a pool.
    Create(Create),
    /// List the members of a pool.
    List {
        /// Pool (name or id).
        pool: String,
        #[command(flatten)]
        filter: crate::common::ListFilterArgs,
    },
    /// Show a member.
    Show {
        /// Pool (name or id).
        pool: String,
        /// Member (name, id or ADDRESS:PORT).
        member: String,
    },
    /// Change a member.
    Set(Set),
    /// Clear settings of a member.
    Unset(Unset),
    /// Remove a member.
    Delete {
        /// Pool (name or id).
        pool: String,
        /// Member (name, id or ADDRESS:PORT).
        member: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `--enable-backup` (or `--backup`) / `--disable-backup`.
#[derive(clap::Args, Debug, Default)]
pub struct Backup {
    /// A backup member: used only when no other member is up.
    #[arg(long, visible_alias = "backup", conflicts_with = "disable_backup")]
    pub enable_backup: bool,
    /// Not a backup member.
    #[arg(long)]
    pub disable_backup: bool,
}

impl Backup {
    fn value(&self) -> Option<bool> {
        match (self.enable_backup, self.disable_backup) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// Pool to add the member to (name or id).
    pub pool: String,
    /// Name of the member.
    #[arg(long)]
    pub name: Option<String>,
    /// The IP address of the member.
    #[arg(long)]
    pub address: String,
    /// The port the member listens on.
    #[arg(long)]
    pub protocol_port: i32,
    /// The weight (0-256; 0 drains it; default 1).
    #[arg(long)]
    pub weight: Option<i32>,
    /// Where health checks go instead of the member's address.
    #[arg(long)]
    pub monitor_address: Option<String>,
    /// Where health checks go instead of the member's port.
    #[arg(long)]
    pub monitor_port: Option<i32>,
    #[command(flatten)]
    pub backup: Backup,
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
    /// Member (name, id or ADDRESS:PORT).
    pub member: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New weight.
    #[arg(long)]
    pub weight: Option<i32>,
    /// Where health checks go instead of the member's address.
    #[arg(long)]
    pub monitor_address: Option<String>,
    /// Where health checks go instead of the member's port.
    #[arg(long)]
    pub monitor_port: Option<i32>,
    #[command(flatten)]
    pub backup: Backup,
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
    /// Member (name, id or ADDRESS:PORT).
    pub member: String,
    /// Clear the name.
    #[arg(long)]
    pub name: bool,
    /// Back to the default weight (1).
    #[arg(long)]
    pub weight: bool,
    /// Not a backup member.
    #[arg(long)]
    pub backup: bool,
    /// Check the member's own address again.
    #[arg(long)]
    pub monitor_address: bool,
    /// Check the member's own port again.
    #[arg(long)]
    pub monitor_port: bool,
    #[command(flatten)]
    pub tags: UnsetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// The pool (for its load balancer) and the member.
async fn find(ctx: &Ctx, pool: &str, member: &str) -> anyhow::Result<(pb::Pool, pb::Member)> {
    let pool = ctx.api.get_pool(&ctx.api.pool_id(pool).await?).await?;
    let member = ctx
        .api
        .get_member(&ctx.api.member_id(&pool.id, member).await?)
        .await?;
    anyhow::ensure!(
        member.pool_id == pool.id,
        "member {} is not in pool {}",
        member.id,
        pool.id
    );
    Ok((pool, member))
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let api = &ctx.api;
    match command {
        Command::Create(args) => {
            let pool = api.get_pool(&api.pool_id(&args.pool).await?).await?;
            let member = pb::Member {
                pool_id: pool.id.clone(),
                name: args.name.unwrap_or_default(),
                address: args.address,
                protocol_port: args.protocol_port,
                weight: args.weight,
                admin_state_up: args.admin.value(),
                backup: args.backup.value().unwrap_or(false),
                monitor_address: args.monitor_address.unwrap_or_default(),
                monitor_port: args.monitor_port.unwrap_or_default(),
                tags: args.tags.tags,
                ..Default::default()
            };
            let created = api
                .lb
                .clone()
                .create_member(pb::CreateMemberRequest {
                    member: Some(member),
                    request_id: String::new(),
                })
                .await
                .api()?;
            let shown = if args.wait.wait {
                wait::maybe(api, &args.wait, &pool.loadbalancer_id, Until::Active).await?;
                api.get_member(&created.id).await?
            } else {
                created
            };
            ctx.out.show(&render::member(&shown));
        }
        Command::List { pool, filter } => {
            let pool = api.pool_id(&pool).await?;
            let items: Vec<_> = api
                .members(&pool, filter.to_proto()?.as_ref())
                .await?
                .iter()
                .map(render::member)
                .collect();
            ctx.out.list(render::MEMBER_COLUMNS, &items);
        }
        Command::Show { pool, member } => {
            let (_, member) = find(ctx, &pool, &member).await?;
            ctx.out.show(&render::member(&member));
        }
        Command::Set(args) => {
            let (pool, current) = find(ctx, &args.pool, &args.member).await?;
            let mut patch = pb::Member {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.set("name", &mut patch.name, args.name);
            mask.set("weight", &mut patch.weight, args.weight.map(Some));
            mask.set("backup", &mut patch.backup, args.backup.value());
            mask.set(
                "monitor_address",
                &mut patch.monitor_address,
                args.monitor_address,
            );
            mask.set("monitor_port", &mut patch.monitor_port, args.monitor_port);
            mask.set(
                "admin_state_up",
                &mut patch.admin_state_up,
                args.admin.value().map(Some),
            );
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &pool, patch, mask, &args.wait).await?;
        }
        Command::Unset(args) => {
            let (pool, current) = find(ctx, &args.pool, &args.member).await?;
            let mut patch = pb::Member {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.clear("name", &mut patch.name, args.name);
            mask.clear("weight", &mut patch.weight, args.weight);
            mask.clear("backup", &mut patch.backup, args.backup);
            mask.clear(
                "monitor_address",
                &mut patch.monitor_address,
                args.monitor_address,
            );
            mask.clear("monitor_port", &mut patch.monitor_port, args.monitor_port);
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &pool, patch, mask, &args.wait).await?;
        }
        Command::Delete { pool, member, wait } => {
            let (pool, member) = find(ctx, &pool, &member).await?;
            api.lb
                .clone()
                .delete_member(pb::DeleteMemberRequest { id: member.id })
                .await
                .api()?;
            wait::maybe(api, &wait, &pool.loadbalancer_id, Until::Active).await?;
        }
    }
    Ok(())
}

async fn update(
    ctx: &Ctx,
    pool: &pb::Pool,
    patch: pb::Member,
    mask: Mask,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let id = patch.id.clone();
    let updated = ctx
        .api
        .lb
        .clone()
        .update_member(pb::UpdateMemberRequest {
            member: Some(patch),
            update_mask: Some(mask.finish()?),
        })
        .await
        .api()?;
    wait::maybe(&ctx.api, wait, &pool.loadbalancer_id, Until::Active).await?;
    if ctx.out.explicit {
        let shown = if wait.wait {
            ctx.api.get_member(&id).await?
        } else {
            updated
        };
        ctx.out.show(&render::member(&shown));
    }
    Ok(())
}
