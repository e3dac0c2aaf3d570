//! L7 policies and rules at the edge: validation of wire input into checked values (every problem
//! reported at once) and rows back to the wire.
use lbaas::api::v1 as pb;

use crate::{
    convert::{
        Violations, check_tags, operating_status, provisioning_status, revision_etag, split_tags,
    },
    entity::{l7_policy, l7_rule},
    error::ApiError,
};

const MAX_RULES: usize = 50;
const MAX_VALUE: usize = 255;
const MAX_URL: usize = 2048;
pub const REDIRECT_CODES: [i32; 5] = [301, 302, 303, 307, 308];

#[derive(Debug, Clone)]
pub struct NewL7Policy {
    pub listener_id: String,
    pub name: String,
    pub description: String,
    pub action: &'static str,
    pub redirect_pool_id: Option<String>,
    pub redirect_url: String,
    pub redirect_prefix: String,
    pub redirect_http_code: i32,
    /// 0 appends.
    pub position: i32,
    pub admin_state_up: bool,
    pub tags: Vec<String>,
    pub rules: Vec<NewL7Rule>,
}

#[derive(Debug, Clone)]
pub struct NewL7Rule {
    pub l7policy_id: String,
    pub rule_type: &'static str,
    pub compare_type: &'static str,
    pub key: String,
    pub value: String,
    pub invert: bool,
    pub admin_state_up: bool,
    pub tags: Vec<String>,
}

/// What rule values, URLs and prefixes may hold: visible ASCII without space, quotes, backslash
/// or '#', so no data plane config can be broken by one.
pub fn safe_text(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '#'))
}

/// What a REGEX rule's value may hold: `safe_text` and backslashes.
pub fn safe_regex(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '#'))
}

/// An HTTP token (header and cookie names).
fn token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn url(v: &mut Violations, field: &str, value: &str) {
    let scheme_ok = value.starts_with("http://") || value.starts_with("https://");
    let host_ok = value
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
    if !scheme_ok || !host_ok || value.len() > MAX_URL || !safe_text(value) {
        v.add(
            field,
            "must be an http:// or https:// URL of visible ASCII without quotes, '#' or '\\'",
        );
    }
}

pub fn validate_l7policy(input: &pb::L7Policy) -> Result<NewL7Policy, ApiError> {
    let mut v = Violations::default();
    let f = "l7policy";
    if input.listener_id.is_empty() || uuid::Uuid::parse_str(&input.listener_id).is_err() {
        v.add(format!("{f}.listener_id"), "is required: a listener id");
    }
    let action = match pb::L7PolicyAction::try_from(input.action) {
        Ok(pb::L7PolicyAction::Reject) => "REJECT",
        Ok(pb::L7PolicyAction::RedirectToUrl) => "REDIRECT_TO_URL",
        Ok(pb::L7PolicyAction::RedirectPrefix) => "REDIRECT_PREFIX",
        Ok(pb::L7PolicyAction::RedirectToPool) => "REDIRECT_TO_POOL",
        Ok(pb::L7PolicyAction::Unspecified) | Err(_) => {
            v.add(
                format!("{f}.action"),
                "is required: REJECT, REDIRECT_TO_URL, REDIRECT_PREFIX or REDIRECT_TO_POOL",
            );
            "REJECT"
        }
    };
    let wants = |name: &str| match action {
        "REDIRECT_TO_POOL" => name == "redirect_pool_id",
        "REDIRECT_TO_URL" => name == "redirect_url",
        "REDIRECT_PREFIX" => name == "redirect_prefix",
        _ => false,
    };
    for (name, value) in [
        ("redirect_pool_id", &input.redirect_pool_id),
        ("redirect_url", &input.redirect_url),
        ("redirect_prefix", &input.redirect_prefix),
    ] {
        if wants(name) && value.is_empty() {
            v.add(format!("{f}.{name}"), format!("is required for {action}"));
        } else if !wants(name) && !value.is_empty() {
            v.add(format!("{f}.{name}"), format!("does not apply to {action}"));
        }
    }
    if !input.redirect_pool_id.is_empty() && uuid::Uuid::parse_str(&input.redirect_pool_id).is_err()
    {
        v.add(format!("{f}.redirect_pool_id"), "is not an id");
    }
    if !input.redirect_url.is_empty() {
        url(&mut v, &format!("{f}.redirect_url"), &input.redirect_url);
    }
    if !input.redirect_prefix.is_empty() {
        url(
            &mut v,
            &format!("{f}.redirect_prefix"),
            &input.redirect_prefix,
        );
    }
    let redirects = matches!(action, "REDIRECT_TO_URL" | "REDIRECT_PREFIX");
    let redirect_http_code = match (redirects, input.redirect_http_code) {
        (true, 0) => 302,
        (true, code) if REDIRECT_CODES.contains(&code) => code,
        (true, _) => {
            v.add(
                format!("{f}.redirect_http_code"),
                "must be 301, 302, 303, 307 or 308",
            );
            302
        }
        (false, 0) => 0,
        (false, _) => {
            v.add(
                format!("{f}.redirect_http_code"),
                format!("does not apply to {action}"),
            );
            0
        }
    };
    if input.position < 0 {
        v.add(format!("{f}.position"), "must be 1 or more (0 appends)");
    }
    if input.rules.len() > MAX_RULES {
        v.add(format!("{f}.rules"), format!("at most {MAX_RULES} rules"));
    }
    let rules = input
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule_fields(&mut v, &format!("{f}.rules[{i}]"), r))
        .collect();
    for (field, value) in [("name", &input.name), ("description", &input.description)] {
        if value.chars().count() > 255 || value.chars().any(char::is_control) {
            v.add(
                format!("{f}.{field}"),
                "must be at most 255 characters without control characters",
            );
        }
    }
    check_tags(&mut v, &format!("{f}.tags"), &input.tags);
    v.finish(NewL7Policy {
        listener_id: input.listener_id.clone(),
        name: input.name.clone(),
        description: input.description.clone(),
        action,
        redirect_pool_id: (!input.redirect_pool_id.is_empty())
            .then(|| input.redirect_pool_id.clone()),
        redirect_url: input.redirect_url.clone(),
        redirect_prefix: input.redirect_prefix.clone(),
        redirect_http_code,
        position: input.position,
        admin_state_up: input.admin_state_up.unwrap_or(true),
        tags: input.tags.clone(),
        rules,
    })
}

pub fn validate_l7rule(input: &pb::L7Rule) -> Result<NewL7Rule, ApiError> {
    let mut v = Violations::default();
    let mut rule = rule_fields(&mut v, "rule", input);
    if input.l7policy_id.is_empty() || uuid::Uuid::parse_str(&input.l7policy_id).is_err() {
        v.add("rule.l7policy_id", "is required: an L7 policy id");
    }
    rule.l7policy_id = input.l7policy_id.clone();
    v.finish(rule)
}

fn rule_fields(v: &mut Violations, f: &str, input: &pb::L7Rule) -> NewL7Rule {
    let rule_type = match pb::L7RuleType::try_from(input.r#type) {
        Ok(pb::L7RuleType::HostName) => "HOST_NAME",
        Ok(pb::L7RuleType::Path) => "PATH",
        Ok(pb::L7RuleType::FileType) => "FILE_TYPE",
        Ok(pb::L7RuleType::Header) => "HEADER",
        Ok(pb::L7RuleType::Cookie) => "COOKIE",
        Ok(pb::L7RuleType::Unspecified) | Err(_) => {
            v.add(
                format!("{f}.type"),
                "is required: HOST_NAME, PATH, FILE_TYPE, HEADER or COOKIE",
            );
            "PATH"
        }
    };
    let compare_type = match pb::L7RuleCompareType::try_from(input.compare_type) {
        Ok(pb::L7RuleCompareType::EqualTo) => "EQUAL_TO",
        Ok(pb::L7RuleCompareType::StartsWith) => "STARTS_WITH",
        Ok(pb::L7RuleCompareType::EndsWith) => "ENDS_WITH",
        Ok(pb::L7RuleCompareType::Contains) => "CONTAINS",
        Ok(pb::L7RuleCompareType::Regex) => "REGEX",
        Ok(pb::L7RuleCompareType::Unspecified) | Err(_) => {
            v.add(
                format!("{f}.compare_type"),
                "is required: EQUAL_TO, STARTS_WITH, ENDS_WITH, CONTAINS or REGEX",
            );
            "EQUAL_TO"
        }
    };
    if rule_type == "FILE_TYPE" && !matches!(compare_type, "EQUAL_TO" | "REGEX") {
        v.add(
            format!("{f}.compare_type"),
            "FILE_TYPE rules compare with EQUAL_TO or REGEX",
        );
    }
    let keyed = matches!(rule_type, "HEADER" | "COOKIE");
    if keyed && !token(&input.key) {
        v.add(
            format!("{f}.key"),
            format!("is required for {rule_type}: 1-64 letters, digits, '-', '_' or '.'"),
        );
    } else if !keyed && !input.key.is_empty() {
        v.add(format!("{f}.key"), format!("does not apply to {rule_type}"));
    }
    // Regular expressions may use '\\' (`\\d`, `\\.`): the data plane takes them strongly quoted,
    // where a backslash is just a backslash. Other values are single words without one.
    let regex = compare_type == "REGEX";
    let text_ok = if regex {
        safe_regex(&input.value)
    } else {
        safe_text(&input.value)
    };
    if input.value.is_empty() || input.value.len() > MAX_VALUE || !text_ok {
        v.add(
            format!("{f}.value"),
            if regex {
                "is required: 1-255 visible ASCII characters without spaces, quotes or '#'"
            } else {
                "is required: 1-255 visible ASCII characters without spaces, quotes, '#' or '\\'"
            },
        );
    } else if regex && regex::Regex::new(&input.value).is_err() {
        v.add(format!("{f}.value"), "is not a valid regular expression");
    }
    check_tags(v, &format!("{f}.tags"), &input.tags);
    NewL7Rule {
        l7policy_id: String::new(),
        rule_type,
        compare_type,
        key: input.key.clone(),
        value: input.value.clone(),
        invert: input.invert,
        admin_state_up: input.admin_state_up.unwrap_or(true),
        tags: input.tags.clone(),
    }
}

pub fn l7policy_to_proto(m: l7_policy::Model, rule_ids: Vec<String>) -> pb::L7Policy {
    pb::L7Policy {
        etag: revision_etag(m.revision),
        action: pb::L7PolicyAction::from_str_name(&format!("L7_POLICY_ACTION_{}", m.action))
            .map_or(0, |a| a as i32),
        provisioning_status: provisioning_status(&m.provisioning_status) as i32,
        operating_status: operating_status(&m.operating_status) as i32,
        tags: split_tags(&m.tags),
        id: m.id,
        project_id: m.project_id,
        listener_id: m.listener_id,
        name: m.name,
        description: m.description,
        redirect_pool_id: m.redirect_pool_id.unwrap_or_default(),
        redirect_url: m.redirect_url,
        redirect_prefix: m.redirect_prefix,
        redirect_http_code: m.redirect_http_code,
        position: m.position,
        admin_state_up: Some(m.admin_state_up),
        rules: Vec::new(),
        rule_ids,
    }
}

pub fn l7rule_to_proto(m: l7_rule::Model) -> pb::L7Rule {
    pb::L7Rule {
        etag: revision_etag(m.revision),
        r#type: pb::L7RuleType::from_str_name(&format!("L7_RULE_TYPE_{}", m.rule_type))
            .map_or(0, |t| t as i32),
        compare_type: pb::L7RuleCompareType::from_str_name(&format!(
            "L7_RULE_COMPARE_TYPE_{}",
            m.compare_type
        ))
        .map_or(0, |t| t as i32),
        provisioning_status: provisioning_status(&m.provisioning_status) as i32,
        operating_status: operating_status(&m.operating_status) as i32,
        tags: split_tags(&m.tags),
        id: m.id,
        project_id: m.project_id,
        l7policy_id: m.l7policy_id,
        key: m.key,
        value: m.value,
        invert: m.invert,
        admin_state_up: Some(m.admin_state_up),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Invalid(v) => v.into_iter().map(|(f, _)| f).collect(),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn policy_fields_follow_the_action() {
        let listener_id = uuid::Uuid::new_v4().to_string();
        let bad = pb::L7Policy {
            listener_id: listener_id.clone(),
            action: pb::L7PolicyAction::RedirectToUrl as i32,
            redirect_pool_id: uuid::Uuid::new_v4().to_string(),
            redirect_http_code: 304,
            rules: vec![pb::L7Rule {
                r#type: pb::L7RuleType::Header as i32,
                compare_type: pb::L7RuleCompareType::Regex as i32,
                value: "(".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = fields(validate_l7policy(&bad).unwrap_err());
        for want in [
            "l7policy.redirect_url",
            "l7policy.redirect_pool_id",
            "l7policy.redirect_http_code",
            "l7policy.rules[0].key",
            "l7policy.rules[0].value",
        ] {
            assert!(got.iter().any(|f| f == want), "{want} missing from {got:?}");
        }
        let good = validate_l7policy(&pb::L7Policy {
            listener_id,
            action: pb::L7PolicyAction::RedirectPrefix as i32,
            redirect_prefix: "https://example.com".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(good.redirect_http_code, 302);
    }

    #[test]
    fn rule_values_cannot_break_a_config() {
        for value in ["a b", "x\"y", "a\nb", "#c", "back\\slash", ""] {
            let rule = pb::L7Rule {
                l7policy_id: uuid::Uuid::new_v4().to_string(),
                r#type: pb::L7RuleType::Path as i32,
                compare_type: pb::L7RuleCompareType::StartsWith as i32,
                value: value.into(),
                ..Default::default()
            };
            assert_eq!(
                fields(validate_l7rule(&rule).unwrap_err()),
                vec!["rule.value"]
            );
        }
        // Regular expressions may use backslashes, and nothing else more.
        let regex = |value: &str| pb::L7Rule {
            l7policy_id: uuid::Uuid::new_v4().to_string(),
            r#type: pb::L7RuleType::Path as i32,
            compare_type: pb::L7RuleCompareType::Regex as i32,
            value: value.into(),
            ..Default::default()
        };
        assert!(validate_l7rule(&regex("^/v\\d+\\.json$")).is_ok());
        for value in ["a b", "a'b", "x\"y", "a\nb", "#c", "(", ""] {
            assert_eq!(
                fields(validate_l7rule(&regex(value)).unwrap_err()),
                vec!["rule.value"],
                "{value:?}"
            );
        }
    }
}
