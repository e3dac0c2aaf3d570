//! `lbctl loadbalancer l7policy create|list|show|set|unset|delete`.
use lbaas::api::v1 as pb;

use crate::{
    client::CallExt as _,
    common::{AdminState, CreateTags, Ctx, Mask, SetTags, UnsetTags},
    enums, render,
    wait::{self, Until, WaitArgs},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create an L7 policy on a listener.
    Create(Create),
    /// List L7 policies.
    List {
        /// Only the policies of this listener (name or id).
        #[arg(long)]
        listener: Option<String>,
        #[command(flatten)]
        filter: crate::common::ListFilterArgs,
    },
    /// Show an L7 policy.
    Show {
        /// L7 policy (name or id).
        policy: String,
    },
    /// Change an L7 policy.
    Set(Set),
    /// Clear settings of an L7 policy.
    Unset(Unset),
    /// Delete an L7 policy.
    Delete {
        /// L7 policy (name or id).
        policy: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// The options create and set share.
#[derive(clap::Args, Debug, Default)]
pub struct Settings {
    /// Set the policy name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set the description.
    #[arg(long)]
    pub description: Option<String>,
    /// What to do when the rules match: REJECT, REDIRECT_TO_URL, REDIRECT_PREFIX or
    /// REDIRECT_TO_POOL.
    #[arg(long, value_parser = enums::parse::<pb::L7PolicyAction>)]
    pub action: Option<pb::L7PolicyAction>,
    /// REDIRECT_TO_POOL: the pool (name or id).
    #[arg(long)]
    pub redirect_pool: Option<String>,
    /// REDIRECT_TO_URL: the URL.
    #[arg(long)]
    pub redirect_url: Option<String>,
    /// REDIRECT_PREFIX: the URL prefix.
    #[arg(long)]
    pub redirect_prefix: Option<String>,
    /// The redirect's HTTP code: 301, 302 (default), 303, 307 or 308.
    #[arg(long)]
    pub redirect_http_code: Option<i32>,
    /// The 1-based position among the listener's policies (default: last).
    #[arg(long)]
    pub position: Option<i32>,
    #[command(flatten)]
    pub admin: AdminState,
}

impl Settings {
    /// Writes the given settings into `p`, recording each in `mask`. A new action also clears
    /// the redirect fields it does not use (as Octavia does), unless they are given.
    async fn apply(self, ctx: &Ctx, p: &mut pb::L7Policy, mask: &mut Mask) -> anyhow::Result<()> {
        if let Some(action) = self.action {
            use pb::L7PolicyAction as A;
            let redirects = matches!(action, A::RedirectToUrl | A::RedirectPrefix);
            mask.clear(
                "redirect_pool_id",
                &mut p.redirect_pool_id,
                action != A::RedirectToPool && self.redirect_pool.is_none(),
            );
            mask.clear(
                "redirect_url",
                &mut p.redirect_url,
                action != A::RedirectToUrl && self.redirect_url.is_none(),
            );
            mask.clear(
                "redirect_prefix",
                &mut p.redirect_prefix,
                action != A::RedirectPrefix && self.redirect_prefix.is_none(),
            );
            mask.clear(
                "redirect_http_code",
                &mut p.redirect_http_code,
                !redirects && self.redirect_http_code.is_none(),
            );
        }
        mask.set("name", &mut p.name, self.name);
        mask.set("description", &mut p.description, self.description);
        mask.set("action", &mut p.action, self.action.map(Into::into));
        if let Some(pool) = self.redirect_pool {
            let id = ctx.api.pool_id(&pool).await?;
            mask.set("redirect_pool_id", &mut p.redirect_pool_id, Some(id));
        }
        mask.set("redirect_url", &mut p.redirect_url, self.redirect_url);
        mask.set(
            "redirect_prefix",
            &mut p.redirect_prefix,
            self.redirect_prefix,
        );
        mask.set(
            "redirect_http_code",
            &mut p.redirect_http_code,
            self.redirect_http_code,
        );
        mask.set("position", &mut p.position, self.position);
        mask.set(
            "admin_state_up",
            &mut p.admin_state_up,
            self.admin.value().map(Some),
        );
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// Listener to add the policy to (name or id).
    pub listener: String,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub tags: CreateTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// L7 policy (name or id).
    pub policy: String,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub tags: SetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Unset {
    /// L7 policy (name or id).
    pub policy: String,
    /// Clear the name.
    #[arg(long)]
    pub name: bool,
    /// Clear the description.
    #[arg(long)]
    pub description: bool,
    /// Back to the default redirect code.
    #[arg(long)]
    pub redirect_http_code: bool,
    #[command(flatten)]
    pub tags: UnsetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let api = &ctx.api;
    match command {
        Command::Create(args) => {
            anyhow::ensure!(args.settings.action.is_some(), "--action is required");
            let listener = api
                .get_listener(&api.listener_id(&args.listener).await?)
                .await?;
            let mut policy = pb::L7Policy {
                listener_id: listener.id.clone(),
                tags: args.tags.tags,
                ..Default::default()
            };
            args.settings
                .apply(ctx, &mut policy, &mut Mask::default())
                .await?;
            let created = api
                .lb
                .clone()
                .create_l7_policy(pb::CreateL7PolicyRequest {
                    l7policy: Some(policy),
                    request_id: String::new(),
                })
                .await
                .api()?;
            let shown = if args.wait.wait {
                wait::maybe(api, &args.wait, &listener.loadbalancer_id, Until::Active).await?;
                api.get_l7policy(&created.id).await?
            } else {
                created
            };
            ctx.out.show(&render::l7policy(&shown));
        }
        Command::List { listener, filter } => {
            let listener = match listener {
                Some(l) => api.listener_id(&l).await?,
                None => String::new(),
            };
            let items: Vec<_> = api
                .l7policies(&listener, filter.to_proto()?.as_ref())
                .await?
                .iter()
                .map(render::l7policy)
                .collect();
            ctx.out.list(render::L7POLICY_COLUMNS, &items);
        }
        Command::Show { policy } => {
            let id = api.l7policy_id(&policy).await?;
            ctx.out
                .show(&render::l7policy(&api.get_l7policy(&id).await?));
        }
        Command::Set(args) => {
            let current = api
                .get_l7policy(&api.l7policy_id(&args.policy).await?)
                .await?;
            let mut patch = pb::L7Policy {
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
                .get_l7policy(&api.l7policy_id(&args.policy).await?)
                .await?;
            let mut patch = pb::L7Policy {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.clear("name", &mut patch.name, args.name);
            mask.clear("description", &mut patch.description, args.description);
            mask.clear(
                "redirect_http_code",
                &mut patch.redirect_http_code,
                args.redirect_http_code,
            );
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &current, patch, mask, &args.wait).await?;
        }
        Command::Delete { policy, wait } => {
            let current = api.get_l7policy(&api.l7policy_id(&policy).await?).await?;
            let lb = api.lb_of_l7policy(&current).await?;
            api.lb
                .clone()
                .delete_l7_policy(pb::DeleteL7PolicyRequest { id: current.id })
                .await
                .api()?;
            wait::maybe(api, &wait, &lb, Until::Active).await?;
        }
    }
    Ok(())
}

async fn update(
    ctx: &Ctx,
    current: &pb::L7Policy,
    patch: pb::L7Policy,
    mask: Mask,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let updated = ctx
        .api
        .lb
        .clone()
        .update_l7_policy(pb::UpdateL7PolicyRequest {
            l7policy: Some(patch),
            update_mask: Some(mask.finish()?),
        })
        .await
        .api()?;
    if wait.wait {
        let lb = ctx.api.lb_of_l7policy(current).await?;
        wait::maybe(&ctx.api, wait, &lb, Until::Active).await?;
    }
    if ctx.out.explicit {
        let shown = if wait.wait {
            ctx.api.get_l7policy(&current.id).await?
        } else {
            updated
        };
        ctx.out.show(&render::l7policy(&shown));
    }
    Ok(())
}
