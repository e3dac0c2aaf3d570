//! `lbctl loadbalancer l7rule create|list|show|set|unset|delete`; like openstack's, every command
//! names the L7 policy first.
use lbaas::api::v1 as pb;

use crate::{
    client::CallExt as _,
    common::{AdminState, CreateTags, Ctx, Mask, SetTags, UnsetTags},
    enums, render,
    wait::{self, Until, WaitArgs},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create an L7 rule in a policy.
    Create(Create),
    /// List the rules of an L7 policy.
    List {
        /// L7 policy (name or id).
        l7policy: String,
        #[command(flatten)]
        filter: crate::common::ListFilterArgs,
    },
    /// Show an L7 rule.
    Show {
        /// L7 policy (name or id).
        l7policy: String,
        /// L7 rule (id).
        l7rule: String,
    },
    /// Change an L7 rule.
    Set(Set),
    /// Clear settings of an L7 rule.
    Unset(Unset),
    /// Delete an L7 rule.
    Delete {
        /// L7 policy (name or id).
        l7policy: String,
        /// L7 rule (id).
        l7rule: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// The options create and set share.
#[derive(clap::Args, Debug, Default)]
pub struct Settings {
    /// What to look at: HOST_NAME, PATH, FILE_TYPE, HEADER or COOKIE.
    #[arg(long = "type", value_parser = enums::parse::<pb::L7RuleType>)]
    pub rule_type: Option<pb::L7RuleType>,
    /// How to compare: EQUAL_TO, STARTS_WITH, ENDS_WITH, CONTAINS or REGEX.
    #[arg(long, value_parser = enums::parse::<pb::L7RuleCompareType>)]
    pub compare_type: Option<pb::L7RuleCompareType>,
    /// HEADER and COOKIE rules: the header or cookie name.
    #[arg(long)]
    pub key: Option<String>,
    /// The value to compare with.
    #[arg(long)]
    pub value: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
}

impl Settings {
    fn apply(self, r: &mut pb::L7Rule, mask: &mut Mask) {
        mask.set("type", &mut r.r#type, self.rule_type.map(Into::into));
        mask.set(
            "compare_type",
            &mut r.compare_type,
            self.compare_type.map(Into::into),
        );
        mask.set("key", &mut r.key, self.key);
        mask.set("value", &mut r.value, self.value);
        mask.set(
            "admin_state_up",
            &mut r.admin_state_up,
            self.admin.value().map(Some),
        );
    }
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// L7 policy to add the rule to (name or id).
    pub l7policy: String,
    #[command(flatten)]
    pub settings: Settings,
    /// Match when the comparison fails.
    #[arg(long)]
    pub invert: bool,
    #[command(flatten)]
    pub tags: CreateTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// L7 policy (name or id).
    pub l7policy: String,
    /// L7 rule (id).
    pub l7rule: String,
    #[command(flatten)]
    pub settings: Settings,
    /// Match when the comparison fails.
    #[arg(long, conflicts_with = "no_invert")]
    pub invert: bool,
    /// Match when the comparison succeeds.
    #[arg(long)]
    pub no_invert: bool,
    #[command(flatten)]
    pub tags: SetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Unset {
    /// L7 policy (name or id).
    pub l7policy: String,
    /// L7 rule (id).
    pub l7rule: String,
    /// Match when the comparison succeeds.
    #[arg(long)]
    pub invert: bool,
    /// Clear the key.
    #[arg(long)]
    pub key: bool,
    #[command(flatten)]
    pub tags: UnsetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// The policy and the rule, checked to belong together.
async fn find(ctx: &Ctx, policy: &str, rule: &str) -> anyhow::Result<(pb::L7Policy, pb::L7Rule)> {
    let policy = ctx
        .api
        .get_l7policy(&ctx.api.l7policy_id(policy).await?)
        .await?;
    let rule = ctx.api.get_l7rule(rule).await?;
    anyhow::ensure!(
        rule.l7policy_id == policy.id,
        "L7 rule {} is not in L7 policy {}",
        rule.id,
        policy.id
    );
    Ok((policy, rule))
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let api = &ctx.api;
    match command {
        Command::Create(args) => {
            let s = &args.settings;
            anyhow::ensure!(
                s.rule_type.is_some() && s.compare_type.is_some() && s.value.is_some(),
                "--type, --compare-type and --value are required"
            );
            let policy = api
                .get_l7policy(&api.l7policy_id(&args.l7policy).await?)
                .await?;
            let mut rule = pb::L7Rule {
                l7policy_id: policy.id.clone(),
                invert: args.invert,
                tags: args.tags.tags,
                ..Default::default()
            };
            args.settings.apply(&mut rule, &mut Mask::default());
            let created = api
                .lb
                .clone()
                .create_l7_rule(pb::CreateL7RuleRequest {
                    rule: Some(rule),
                    request_id: String::new(),
                })
                .await
                .api()?;
            let shown = if args.wait.wait {
                let lb = api.lb_of_l7policy(&policy).await?;
                wait::maybe(api, &args.wait, &lb, Until::Active).await?;
                api.get_l7rule(&created.id).await?
            } else {
                created
            };
            ctx.out.show(&render::l7rule(&shown));
        }
        Command::List { l7policy, filter } => {
            let policy = api.l7policy_id(&l7policy).await?;
            let items: Vec<_> = api
                .l7rules(&policy, filter.to_proto()?.as_ref())
                .await?
                .iter()
                .map(render::l7rule)
                .collect();
            ctx.out.list(render::L7RULE_COLUMNS, &items);
        }
        Command::Show { l7policy, l7rule } => {
            let (_, rule) = find(ctx, &l7policy, &l7rule).await?;
            ctx.out.show(&render::l7rule(&rule));
        }
        Command::Set(args) => {
            let (policy, current) = find(ctx, &args.l7policy, &args.l7rule).await?;
            let mut patch = pb::L7Rule {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            args.settings.apply(&mut patch, &mut mask);
            let invert = match (args.invert, args.no_invert) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            mask.set("invert", &mut patch.invert, invert);
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &policy, patch, mask, &args.wait).await?;
        }
        Command::Unset(args) => {
            let (policy, current) = find(ctx, &args.l7policy, &args.l7rule).await?;
            let mut patch = pb::L7Rule {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.clear("invert", &mut patch.invert, args.invert);
            mask.clear("key", &mut patch.key, args.key);
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, &policy, patch, mask, &args.wait).await?;
        }
        Command::Delete {
            l7policy,
            l7rule,
            wait,
        } => {
            let (policy, rule) = find(ctx, &l7policy, &l7rule).await?;
            let lb = api.lb_of_l7policy(&policy).await?;
            api.lb
                .clone()
                .delete_l7_rule(pb::DeleteL7RuleRequest { id: rule.id })
                .await
                .api()?;
            wait::maybe(api, &wait, &lb, Until::Active).await?;
        }
    }
    Ok(())
}

async fn update(
    ctx: &Ctx,
    policy: &pb::L7Policy,
    patch: pb::L7Rule,
    mask: Mask,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let id = patch.id.clone();
    let updated = ctx
        .api
        .lb
        .clone()
        .update_l7_rule(pb::UpdateL7RuleRequest {
            rule: Some(patch),
            update_mask: Some(mask.finish()?),
        })
        .await
        .api()?;
    if wait.wait {
        let lb = ctx.api.lb_of_l7policy(policy).await?;
        wait::maybe(&ctx.api, wait, &lb, Until::Active).await?;
    }
    if ctx.out.explicit {
        let shown = if wait.wait {
            ctx.api.get_l7rule(&id).await?
        } else {
            updated
        };
        ctx.out.show(&render::l7rule(&shown));
    }
    Ok(())
}
