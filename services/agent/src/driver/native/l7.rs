//! L7 policies of HTTP and TERMINATED_HTTPS listeners: compiled at apply (a bad rule or regex
//! refuses the config), evaluated per request in order. The first policy whose rules all match
//! decides what happens to the request (reject, redirect or another pool); a policy without rules
//! never matches; no matching policy sends the request to the listener's default pool.
use std::sync::Arc;

use hyper::{
    HeaderMap, StatusCode, Uri,
    header::{HeaderName, HeaderValue},
};
use lbaas::agent::v1::{L7Action, L7CompareType, L7PolicyConfig, L7RuleConfig, L7RuleType};
use regex::Regex;

use super::Pool;

/// What a matching policy does.
#[derive(Debug)]
pub enum Action {
    /// 403 Forbidden.
    Reject,
    /// A redirect to exactly this URL.
    RedirectTo {
        location: HeaderValue,
        code: StatusCode,
    },
    /// A redirect to this prefix followed by the request's path and query.
    RedirectPrefix { prefix: String, code: StatusCode },
    /// Balance over this pool instead of the default one (`None`: the pool is disabled).
    Pool(Option<Arc<Pool>>),
}

#[derive(Debug)]
enum Subject {
    Host,
    Path,
    FileType,
    Header(HeaderName),
    Cookie(String),
}

#[derive(Debug)]
enum Compare {
    Equal(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Regex(Regex),
}

#[derive(Debug)]
struct Rule {
    subject: Subject,
    compare: Compare,
    invert: bool,
}

#[derive(Debug)]
pub struct Policy {
    pub id: String,
    rules: Vec<Rule>,
    pub action: Action,
}

/// Compiles one policy; `pool` finds the pool a REDIRECT_TO_POOL policy names (`Err` when there is
/// no such pool, `Ok(None)` when it is disabled).
pub fn compile(
    policy: &L7PolicyConfig,
    pool: impl Fn(&str) -> Result<Option<Arc<Pool>>, String>,
) -> Result<Policy, String> {
    let what = format!("l7 policy {}", policy.id);
    let code = || -> Result<StatusCode, String> {
        match policy.redirect_http_code {
            0 => Ok(StatusCode::FOUND),
            c @ (301 | 302 | 303 | 307 | 308) => {
                StatusCode::from_u16(c as u16).map_err(|_| format!("{what}: bad redirect code {c}"))
            }
            c => Err(format!(
                "{what}: redirect code {c} is not 301, 302, 303, 307 or 308"
            )),
        }
    };
    let action = match policy.action() {
        L7Action::Reject => Action::Reject,
        L7Action::RedirectToUrl => {
            if policy.redirect_url.is_empty() {
                return Err(format!("{what}: REDIRECT_TO_URL without redirect_url"));
            }
            let location = HeaderValue::from_str(&policy.redirect_url).map_err(|_| {
                format!(
                    "{what}: redirect_url {:?} is not a valid header value",
                    policy.redirect_url
                )
            })?;
            Action::RedirectTo {
                location,
                code: code()?,
            }
        }
        L7Action::RedirectPrefix => {
            if policy.redirect_prefix.is_empty() {
                return Err(format!("{what}: REDIRECT_PREFIX without redirect_prefix"));
            }
            HeaderValue::from_str(&policy.redirect_prefix).map_err(|_| {
                format!(
                    "{what}: redirect_prefix {:?} is not a valid header value",
                    policy.redirect_prefix
                )
            })?;
            Action::RedirectPrefix {
                prefix: policy.redirect_prefix.clone(),
                code: code()?,
            }
        }
        L7Action::RedirectToPool => {
            Action::Pool(pool(&policy.redirect_pool_id).map_err(|e| format!("{what}: {e}"))?)
        }
        L7Action::Unspecified => return Err(format!("{what}: no action")),
    };
    let rules = policy
        .rules
        .iter()
        .map(|r| rule(r).map_err(|e| format!("{what}, rule {}: {e}", r.id)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy {
        id: policy.id.clone(),
        rules,
        action,
    })
}

fn rule(rule: &L7RuleConfig) -> Result<Rule, String> {
    let host = rule.r#type() == L7RuleType::HostName;
    let subject = match rule.r#type() {
        L7RuleType::HostName => Subject::Host,
        L7RuleType::Path => Subject::Path,
        L7RuleType::FileType => Subject::FileType,
        L7RuleType::Header => Subject::Header(
            HeaderName::from_bytes(rule.key.as_bytes())
                .map_err(|_| format!("{:?} is not a header name", rule.key))?,
        ),
        L7RuleType::Cookie => {
            if rule.key.is_empty() {
                return Err("COOKIE rule without key".into());
            }
            Subject::Cookie(rule.key.clone())
        }
        L7RuleType::Unspecified => return Err("no type".into()),
    };
    // Host names compare case-insensitively.
    let value = if host {
        rule.value.to_ascii_lowercase()
    } else {
        rule.value.clone()
    };
    let compare = match rule.compare_type() {
        L7CompareType::EqualTo => Compare::Equal(value),
        L7CompareType::StartsWith => Compare::StartsWith(value),
        L7CompareType::EndsWith => Compare::EndsWith(value),
        L7CompareType::Contains => Compare::Contains(value),
        L7CompareType::Regex => Compare::Regex(
            regex::RegexBuilder::new(&rule.value)
                .case_insensitive(host)
                .build()
                .map_err(|e| format!("bad regex {:?}: {e}", rule.value))?,
        ),
        L7CompareType::Unspecified => return Err("no compare type".into()),
    };
    Ok(Rule {
        subject,
        compare,
        invert: rule.invert,
    })
}

/// The first policy whose rules all match the request.
pub fn decide<'a>(policies: &'a [Policy], uri: &Uri, headers: &HeaderMap) -> Option<&'a Policy> {
    policies
        .iter()
        .find(|p| !p.rules.is_empty() && p.rules.iter().all(|r| matches(r, uri, headers)))
}

fn matches(rule: &Rule, uri: &Uri, headers: &HeaderMap) -> bool {
    let value: Option<String> = match &rule.subject {
        Subject::Host => host(uri, headers),
        Subject::Path => Some(uri.path().to_owned()),
        Subject::FileType => Some(file_type(uri.path()).to_owned()),
        Subject::Header(name) => headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        Subject::Cookie(name) => cookie(headers, name).map(str::to_owned),
    };
    let hit = value.is_some_and(|v| match &rule.compare {
        Compare::Equal(x) => v == *x,
        Compare::StartsWith(x) => v.starts_with(x.as_str()),
        Compare::EndsWith(x) => v.ends_with(x.as_str()),
        Compare::Contains(x) => v.contains(x.as_str()),
        Compare::Regex(re) => re.is_match(&v),
    });
    hit != rule.invert
}

/// The host the request names (Host header, else the URI's authority, as HTTP/2 sends it),
/// without port, lower case.
pub fn host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let raw = match headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        Some(h) => h.to_owned(),
        None => uri.authority()?.as_str().to_owned(),
    };
    let raw = raw.rsplit_once('@').map_or(raw.as_str(), |(_, h)| h);
    let name = if raw.starts_with('[') {
        // [v6]:port
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.split_once(':').map_or(raw, |(h, _)| h)
    };
    Some(name.to_ascii_lowercase())
}

/// The extension of the path's last segment, without the dot ("" when it has none).
pub fn file_type(path: &str) -> &str {
    let last = path.rsplit('/').next().unwrap_or(path);
    last.rsplit_once('.').map_or("", |(_, ext)| ext)
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(
        r#type: L7RuleType,
        compare: L7CompareType,
        key: &str,
        value: &str,
        invert: bool,
    ) -> L7RuleConfig {
        L7RuleConfig {
            id: "r".into(),
            r#type: r#type as i32,
            compare_type: compare as i32,
            key: key.into(),
            value: value.into(),
            invert,
        }
    }

    fn policy(action: L7Action, rules: Vec<L7RuleConfig>) -> L7PolicyConfig {
        L7PolicyConfig {
            id: "p".into(),
            action: action as i32,
            redirect_url: "https://elsewhere.example/".into(),
            redirect_prefix: "https://elsewhere.example".into(),
            rules,
            ..Default::default()
        }
    }

    fn no_pool(_: &str) -> Result<Option<Arc<Pool>>, String> {
        Err("no such pool".into())
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> (Uri, HeaderMap) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        (uri.parse().unwrap(), map)
    }

    #[test]
    fn rules_match_as_the_table_says() {
        use L7CompareType::*;
        use L7RuleType::*;
        let std_headers: &[(&str, &str)] = &[
            ("host", "WWW.Example.COM:8080"),
            ("x-tenant", "blue-team"),
            ("cookie", "a=1; session=abc123; theme=dark"),
        ];
        // (type, compare, key, value, invert, uri, matches)
        let table: &[(L7RuleType, L7CompareType, &str, &str, bool, &str, bool)] = &[
            (HostName, EqualTo, "", "www.example.com", false, "/", true),
            (HostName, EqualTo, "", "WWW.EXAMPLE.com", false, "/", true),
            (HostName, EqualTo, "", "example.com", false, "/", false),
            (HostName, EndsWith, "", ".example.com", false, "/", true),
            (HostName, StartsWith, "", "www.", false, "/", true),
            (
                HostName,
                Regex,
                "",
                "^WWW\\.example\\.com$",
                false,
                "/",
                true,
            ),
            (HostName, EqualTo, "", "www.example.com", true, "/", false),
            (Path, EqualTo, "", "/api/v1", false, "/api/v1?x=1", true),
            (Path, StartsWith, "", "/api", false, "/api/v1", true),
            (Path, StartsWith, "", "/api", false, "/static/api", false),
            (Path, EndsWith, "", "/v1", false, "/api/v1", true),
            (Path, Contains, "", "pi/v", false, "/api/v1", true),
            (Path, Regex, "", "^/api/v[0-9]+$", false, "/api/v12", true),
            (Path, Regex, "", "^/api/v[0-9]+$", false, "/api/vx", false),
            (Path, EqualTo, "", "/API/v1", false, "/api/v1", false),
            (Path, StartsWith, "", "/api", true, "/static", true),
            (FileType, EqualTo, "", "jpg", false, "/img/cat.jpg", true),
            (
                FileType,
                EqualTo,
                "",
                "jpg",
                false,
                "/img/cat.jpg?size=2",
                true,
            ),
            (FileType, EqualTo, "", "gz", false, "/a/b.tar.gz", true),
            (FileType, EqualTo, "", "", false, "/img.d/cat", true),
            (FileType, EqualTo, "", "jpg", false, "/img.jpg/cat", false),
            (FileType, Regex, "", "^(png|jpe?g)$", false, "/x.jpeg", true),
            (Header, EqualTo, "X-Tenant", "blue-team", false, "/", true),
            (Header, StartsWith, "x-tenant", "blue", false, "/", true),
            (Header, Contains, "x-tenant", "red", false, "/", false),
            (Header, EqualTo, "x-missing", "", false, "/", false),
            (Header, EqualTo, "x-missing", "anything", true, "/", true),
            (Cookie, EqualTo, "session", "abc123", false, "/", true),
            (Cookie, StartsWith, "theme", "da", false, "/", true),
            (Cookie, EqualTo, "session", "abc", false, "/", false),
            (Cookie, Regex, "session", "^abc[0-9]+$", false, "/", true),
            (Cookie, EqualTo, "nope", "", false, "/", false),
            (Cookie, EqualTo, "nope", "x", true, "/", true),
        ];
        for (i, (t, c, key, value, invert, uri, want)) in table.iter().enumerate() {
            let compiled = compile(
                &policy(L7Action::Reject, vec![rule(*t, *c, key, value, *invert)]),
                no_pool,
            )
            .unwrap();
            let (uri, headers) = request(uri, std_headers);
            let got = decide(std::slice::from_ref(&compiled), &uri, &headers).is_some();
            assert_eq!(
                got, *want,
                "row {i}: {t:?} {c:?} {key:?} {value:?} invert={invert} on {uri}"
            );
        }
    }

    #[test]
    fn first_policy_whose_rules_all_match_decides() {
        use L7CompareType::*;
        use L7RuleType::*;
        let mut empty = policy(L7Action::Reject, vec![]);
        empty.id = "empty".into();
        let mut both = policy(
            L7Action::RedirectToUrl,
            vec![
                rule(Path, StartsWith, "", "/old", false),
                rule(HostName, EqualTo, "", "a.example", false),
            ],
        );
        both.id = "both".into();
        let mut path = policy(
            L7Action::RedirectPrefix,
            vec![rule(Path, StartsWith, "", "/old", false)],
        );
        path.id = "path".into();
        let policies: Vec<Policy> = [empty, both, path]
            .iter()
            .map(|p| compile(p, no_pool).unwrap())
            .collect();
        let decided = |uri: &str, host: &str| {
            let (uri, headers) = request(uri, &[("host", host)]);
            decide(&policies, &uri, &headers).map(|p| p.id.clone())
        };
        assert_eq!(decided("/old/x", "a.example").as_deref(), Some("both"));
        assert_eq!(decided("/old/x", "b.example").as_deref(), Some("path"));
        assert_eq!(decided("/new", "a.example"), None);
        // HTTP/2: no Host header, the authority names the host.
        let uri: Uri = "https://A.Example:443/old".parse().unwrap();
        assert_eq!(
            decide(&policies, &uri, &HeaderMap::new()).map(|p| p.id.as_str()),
            Some("both")
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let bad_regex = policy(
            L7Action::Reject,
            vec![rule(
                L7RuleType::Path,
                L7CompareType::Regex,
                "",
                "(unclosed",
                false,
            )],
        );
        assert!(compile(&bad_regex, no_pool).unwrap_err().contains("regex"));
        let mut bad_code = policy(L7Action::RedirectToUrl, vec![]);
        bad_code.redirect_http_code = 200;
        assert!(compile(&bad_code, no_pool).is_err());
        let to_pool = policy(L7Action::RedirectToPool, vec![]);
        assert!(
            compile(&to_pool, no_pool)
                .unwrap_err()
                .contains("no such pool")
        );
        let bad_header = policy(
            L7Action::Reject,
            vec![rule(
                L7RuleType::Header,
                L7CompareType::EqualTo,
                "bad header",
                "x",
                false,
            )],
        );
        assert!(compile(&bad_header, no_pool).is_err());
        let unspecified = policy(L7Action::Unspecified, vec![]);
        assert!(compile(&unspecified, no_pool).is_err());
        let ok = policy(L7Action::RedirectToUrl, vec![]);
        match compile(&ok, no_pool).unwrap().action {
            Action::RedirectTo { code, .. } => assert_eq!(code, StatusCode::FOUND),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(file_type("/a/b/c.tar.gz"), "gz");
        assert_eq!(file_type("/"), "");
        assert_eq!(file_type("/a.b/c"), "");
        let (uri, headers) = request("/", &[("host", "[::1]:80")]);
        assert_eq!(host(&uri, &headers).as_deref(), Some("[::1]"));
        let (_, headers) = request("/", &[("cookie", "a=1"), ("cookie", "b=\"2\"")]);
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
