//! L7 policies of HTTP and TERMINATED_HTTPS listeners.
//!
//! The first policy (in the given order) whose rules all match decides what happens to a request;
//! a policy without rules never matches. HAProxy runs every `http-request` rule before any
//! `use_backend`, so the actions are not rendered one after another: first each policy, in order,
//! records its id in `txn.l7p` when its rules match and no earlier policy matched, then each
//! action applies only to the request whose `txn.l7p` is its policy:
//!
//! ```text
//! acl l7_decided var(txn.l7p) -m found
//! acl r_<rule> path -m beg -- /api
//! http-request set-var(txn.l7p) str(<policy>) if !l7_decided r_<rule> !r_<inverted rule>
//! acl l7p_<policy> var(txn.l7p) -m str <policy>
//! http-request deny if l7p_<policy>                           (REJECT: 403)
//! http-request redirect code 302 location <url> if l7p_<policy>
//! http-request redirect code 302 prefix <prefix> if l7p_<policy>
//! use_backend p_<pool> if l7p_<policy>
//! ```
use std::{collections::HashSet, fmt::Write as _};

use lbaas::agent::v1::{
    L7Action, L7CompareType, L7PolicyConfig, L7RuleConfig, L7RuleType, ListenerConfig,
    LoadBalancerConfig,
};

use super::render::{RenderError, check_id, pool_mode, reject};

/// HAProxy splits a config line into at most 64 words; a policy's condition line holds five words
/// besides its rules.
pub const MAX_RULES_PER_POLICY: usize = 50;

/// The longest rule value, URL or prefix accepted.
const MAX_TEXT_LEN: usize = 2048;

/// Writes the listener's policies into its frontend. Its pools must be HTTP pools of `lb`.
pub fn render_policies(
    out: &mut String,
    lb: &LoadBalancerConfig,
    listener: &ListenerConfig,
    field: &str,
) -> Result<(), RenderError> {
    if listener.l7_policies.is_empty() {
        return Ok(());
    }
    let mut policy_ids = HashSet::new();
    let mut rule_ids = HashSet::new();
    // Rules first: one ACL each, so each condition below stays a list of names.
    let mut acls = String::new();
    let mut selects = String::new();
    let mut actions = String::new();
    let mut backends = String::new();
    let mut file_type = false;
    for (i, policy) in listener.l7_policies.iter().enumerate() {
        let field = format!("{field}.l7_policies[{i}]");
        check_id(&policy.id, &format!("{field}.id"))?;
        if !policy_ids.insert(policy.id.as_str()) {
            return Err(reject(format!("{field}.id"), "is used twice"));
        }
        if policy.rules.len() > MAX_RULES_PER_POLICY {
            return Err(reject(
                format!("{field}.rules"),
                format!("at most {MAX_RULES_PER_POLICY} rules"),
            ));
        }
        let action = action(lb, policy, &field)?;
        let mut condition = String::new();
        for (j, rule) in policy.rules.iter().enumerate() {
            let field = format!("{field}.rules[{j}]");
            check_id(&rule.id, &format!("{field}.id"))?;
            if !rule_ids.insert(rule.id.as_str()) {
                return Err(reject(format!("{field}.id"), "is used twice"));
            }
            file_type |= rule.r#type() == L7RuleType::FileType;
            let _ = writeln!(acls, "    acl r_{} {}", rule.id, rule_match(rule, &field)?);
            let _ = write!(
                condition,
                " {}r_{}",
                if rule.invert { "!" } else { "" },
                rule.id
            );
        }
        if policy.rules.is_empty() {
            let _ = writeln!(
                selects,
                "    # policy {} has no rules: it never matches",
                policy.id
            );
            continue;
        }
        let _ = writeln!(
            selects,
            "    http-request set-var(txn.l7p) str({}) if !l7_decided{condition}",
            policy.id
        );
        let _ = writeln!(
            acls,
            "    acl l7p_{} var(txn.l7p) -m str {}",
            policy.id, policy.id
        );
        match action {
            Action::HttpRequest(rule) => {
                let _ = writeln!(actions, "    http-request {rule} if l7p_{}", policy.id);
            }
            Action::Backend(pool) => {
                let _ = writeln!(backends, "    use_backend p_{pool} if l7p_{}", policy.id);
            }
        }
    }
    out.push_str("    acl l7_decided var(txn.l7p) -m found\n");
    out.push_str(&acls);
    if file_type {
        // FILE_TYPE rules read the extension of the path's last segment; a segment without a dot
        // sets nothing, so those rules do not match it.
        out.push_str(
            "    http-request set-var(txn.l7ext) path,regsub(^.*/,),regsub(^.*[.],) if { path -m reg [.][^/]*$ }\n",
        );
    }
    out.push_str(&selects);
    out.push_str(&actions);
    out.push_str(&backends);
    Ok(())
}

enum Action {
    /// An `http-request` action (deny, redirect).
    HttpRequest(String),
    /// A `use_backend` to this pool.
    Backend(String),
}

fn action(
    lb: &LoadBalancerConfig,
    policy: &L7PolicyConfig,
    field: &str,
) -> Result<Action, RenderError> {
    let code = || -> Result<u32, RenderError> {
        match policy.redirect_http_code {
            0 => Ok(302),
            c @ (301 | 302 | 303 | 307 | 308) => Ok(c),
            _ => Err(reject(
                format!("{field}.redirect_http_code"),
                "must be 301, 302, 303, 307 or 308",
            )),
        }
    };
    match policy.action() {
        L7Action::Reject => Ok(Action::HttpRequest("deny".into())),
        L7Action::RedirectToUrl => {
            let url = log_format_text(&policy.redirect_url, &format!("{field}.redirect_url"))?;
            Ok(Action::HttpRequest(format!(
                "redirect code {} location {url}",
                code()?
            )))
        }
        L7Action::RedirectPrefix => {
            let prefix =
                log_format_text(&policy.redirect_prefix, &format!("{field}.redirect_prefix"))?;
            Ok(Action::HttpRequest(format!(
                "redirect code {} prefix {prefix}",
                code()?
            )))
        }
        L7Action::RedirectToPool => {
            let pool_field = format!("{field}.redirect_pool_id");
            check_id(&policy.redirect_pool_id, &pool_field)?;
            let pool = lb
                .pools
                .iter()
                .find(|p| p.id == policy.redirect_pool_id)
                .ok_or_else(|| reject(&pool_field, "names no pool of this load balancer"))?;
            if pool_mode(pool.protocol(), &pool_field)? != "http" {
                return Err(reject(pool_field, "must name an HTTP pool"));
            }
            Ok(Action::Backend(pool.id.clone()))
        }
        L7Action::Unspecified => Err(reject(format!("{field}.action"), "is required")),
    }
}

/// What follows `acl <name>`: the sample to read and how to compare it with the rule's value.
fn rule_match(rule: &L7RuleConfig, field: &str) -> Result<String, RenderError> {
    // A regular expression is written strongly quoted ('...'), where HAProxy reads a backslash as
    // itself, so `\d` reaches PCRE intact; other values are plain words.
    let value = if rule.compare_type() == L7CompareType::Regex {
        format!("'{}'", check_regex(&rule.value, &format!("{field}.value"))?)
    } else {
        check_text(&rule.value, &format!("{field}.value"))?.to_owned()
    };
    let value = value.as_str();
    let compare = match rule.compare_type() {
        L7CompareType::EqualTo => "str",
        L7CompareType::StartsWith => "beg",
        L7CompareType::EndsWith => "end",
        L7CompareType::Contains => "sub",
        L7CompareType::Regex => "reg",
        L7CompareType::Unspecified => {
            return Err(reject(format!("{field}.compare_type"), "is required"));
        }
    };
    // `--` ends the flags, so a value such as "-f" stays a value.
    Ok(match rule.r#type() {
        L7RuleType::HostName => {
            // Host names compare case-insensitively, without the port.
            let value = if compare == "reg" {
                value.to_owned()
            } else {
                value.to_ascii_lowercase()
            };
            format!("req.hdr(host),lower,regsub(:[0-9]+$,) -i -m {compare} -- {value}")
        }
        L7RuleType::Path => format!("path -m {compare} -- {value}"),
        L7RuleType::FileType => format!("var(txn.l7ext) -m {compare} -- {value}"),
        L7RuleType::Header => format!(
            "req.hdr({}) -m {compare} -- {value}",
            check_token(&rule.key, &format!("{field}.key"))?
        ),
        L7RuleType::Cookie => format!(
            "req.cook({}) -m {compare} -- {value}",
            check_token(&rule.key, &format!("{field}.key"))?
        ),
        L7RuleType::Unspecified => return Err(reject(format!("{field}.type"), "is required")),
    })
}

/// A value written as one word: visible ASCII without space, quotes, '\' or '#'.
fn check_text<'a>(text: &'a str, field: &str) -> Result<&'a str, RenderError> {
    check_word(text, field, false)
}

/// A regular expression written inside single quotes: like `check_text`, but a backslash is
/// allowed (nothing is interpreted inside single quotes, and a single quote cannot appear).
fn check_regex<'a>(text: &'a str, field: &str) -> Result<&'a str, RenderError> {
    check_word(text, field, true)
}

fn check_word<'a>(text: &'a str, field: &str, backslash: bool) -> Result<&'a str, RenderError> {
    if text.is_empty() || text.len() > MAX_TEXT_LEN {
        return Err(reject(
            field,
            format!("must be 1-{MAX_TEXT_LEN} characters"),
        ));
    }
    let allowed = |b: u8| {
        b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'#') && (backslash || b != b'\\')
    };
    if !text.bytes().all(allowed) {
        return Err(reject(
            field,
            if backslash {
                "must be visible ASCII without space, quotes or '#'"
            } else {
                "must be visible ASCII without space, quotes, '\\' or '#'"
            },
        ));
    }
    Ok(text)
}

/// A redirect target: checked like a value, and with '%' doubled since HAProxy reads it as a
/// log-format string (where `%[...]` would run a sample fetch).
fn log_format_text(text: &str, field: &str) -> Result<String, RenderError> {
    Ok(check_text(text, field)?.replace('%', "%%"))
}

/// A header or cookie name: an HTTP token (RFC 9110 tchar, less '#' and '\'').
fn check_token<'a>(key: &'a str, field: &str) -> Result<&'a str, RenderError> {
    if key.is_empty()
        || key.len() > 256
        || !key.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'$'
                        | b'%'
                        | b'&'
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
    {
        return Err(reject(
            field,
            "must be a header or cookie name (letters, digits and !$%&*+-.^_`|~)",
        ));
    }
    Ok(key)
}
