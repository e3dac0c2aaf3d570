//! What the resource commands share: the options every kind has (`--enable`/`--disable`, tags),
//! the `update_mask` a `set` builds, parsers for option values (`--insert-headers`,
//! `--session-persistence`, `ADDRESS:PORT`, labels), and the printing contexts.
use std::collections::HashMap;

use anyhow::Context as _;
use lbaas::api::v1 as pb;

use crate::{
    client::{Api, Provider},
    enums,
    output::Printer,
};

/// What a command runs with: the API and how to print.
pub struct Ctx {
    pub api: Api,
    pub out: Printer,
}

/// What an operator command runs with: the scheduler's provider API, the project placement is
/// explained for (the global --project), and how to print.
pub struct OperatorCtx {
    pub provider: Provider,
    pub project: String,
    pub out: Printer,
}

/// `--enable` / `--disable` (admin_state_up).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AdminState {
    /// Enable it (admin_state_up true; the default on create).
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable it (admin_state_up false).
    #[arg(long)]
    pub disable: bool,
}

impl AdminState {
    pub fn value(&self) -> Option<bool> {
        match (self.enable, self.disable) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// Filters and order of the lists of a load balancer's objects (the API's `ListFilter`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ListFilterArgs {
    /// Only objects whose ATTRIBUTE (a field name, e.g. protocol_port) is VALUE (enums by name,
    /// e.g. protocol=HTTP); repeat for more.
    #[arg(long = "filter", value_name = "ATTRIBUTE=VALUE")]
    pub equals: Vec<String>,
    /// Only objects with all these tags (TAG,TAG,...).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Only objects with at least one of these tags.
    #[arg(long, value_delimiter = ',')]
    pub any_tags: Vec<String>,
    /// Leave out objects with all these tags.
    #[arg(long, value_delimiter = ',')]
    pub not_tags: Vec<String>,
    /// Leave out objects with any of these tags.
    #[arg(long, value_delimiter = ',')]
    pub not_any_tags: Vec<String>,
    /// Order by an attribute: ATTRIBUTE or ATTRIBUTE:desc.
    #[arg(long, value_name = "ATTRIBUTE[:desc]")]
    pub sort: Option<String>,
}

impl ListFilterArgs {
    /// The filter to send; `None` when nothing is asked for.
    pub fn to_proto(&self) -> anyhow::Result<Option<lbaas::api::v1::ListFilter>> {
        let mut equals = std::collections::HashMap::new();
        for pair in &self.equals {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--filter {pair:?}: expected ATTRIBUTE=VALUE"))?;
            equals.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        let order_by = match self.sort.as_deref().map(|s| s.split_once(':')) {
            None => String::new(),
            Some(None) => self.sort.clone().unwrap_or_default(),
            Some(Some((key, direction))) => format!("{key} {direction}"),
        };
        let filter = lbaas::api::v1::ListFilter {
            equals,
            tags: self.tags.clone(),
            tags_any: self.any_tags.clone(),
            not_tags: self.not_tags.clone(),
            not_tags_any: self.not_any_tags.clone(),
            order_by,
        };
        Ok((filter != lbaas::api::v1::ListFilter::default()).then_some(filter))
    }
}

/// Tags on create.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CreateTags {
    /// A tag; repeat for more.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// No tags (the default).
    #[arg(long, conflicts_with = "tags")]
    pub no_tag: bool,
}

/// Tags on set: added to those it has; `--no-tag` first clears them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SetTags {
    /// A tag to add; repeat for more.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Remove every tag (before adding those of --tag).
    #[arg(long)]
    pub no_tag: bool,
}

impl SetTags {
    /// The new tags, or `None` when unchanged.
    pub fn apply(&self, current: &[String]) -> Option<Vec<String>> {
        if self.tags.is_empty() && !self.no_tag {
            return None;
        }
        let mut tags = if self.no_tag {
            Vec::new()
        } else {
            current.to_vec()
        };
        for t in &self.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        Some(tags)
    }
}

/// Tags on unset.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct UnsetTags {
    /// A tag to remove; repeat for more.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    pub all_tag: bool,
}

impl UnsetTags {
    pub fn apply(&self, current: &[String]) -> Option<Vec<String>> {
        if self.all_tag {
            return Some(Vec::new());
        }
        if self.tags.is_empty() {
            return None;
        }
        Some(
            current
                .iter()
                .filter(|t| !self.tags.contains(t))
                .cloned()
                .collect(),
        )
    }
}

/// The fields a `set` or `unset` changes: its update_mask.
#[derive(Debug, Default)]
pub struct Mask(Vec<String>);

impl Mask {
    pub fn add(&mut self, path: &str) {
        if !self.0.iter().any(|p| p == path) {
            self.0.push(path.to_owned());
        }
    }

    /// Sets `*field` and records `path` when `value` is given.
    pub fn set<T>(&mut self, path: &str, field: &mut T, value: Option<T>) {
        if let Some(v) = value {
            *field = v;
            self.add(path);
        }
    }

    /// Records `path` when `flag` is on (unset's options).
    pub fn clear<T: Default>(&mut self, path: &str, field: &mut T, flag: bool) {
        if flag {
            *field = T::default();
            self.add(path);
        }
    }

    /// The mask; an empty one is refused (the API would take it as "every field").
    pub fn finish(self) -> anyhow::Result<prost_types::FieldMask> {
        anyhow::ensure!(
            !self.0.is_empty(),
            "nothing to change: give at least one option"
        );
        Ok(prost_types::FieldMask { paths: self.0 })
    }

    #[cfg(test)]
    pub fn paths(&self) -> &[String] {
        &self.0
    }
}

/// `KEY=VALUE,KEY=VALUE`.
pub fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))
        })
        .collect()
}

/// One `KEY=VALUE` (a label).
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match key_values(s)?.as_slice() {
        [pair] => Ok(pair.clone()),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Labels on set: added to (or replacing) those it has; `--no-label` first clears them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SetLabels {
    /// A label KEY=VALUE to add (or change); repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Remove every label (before adding those of --label).
    #[arg(long)]
    pub no_label: bool,
}

impl SetLabels {
    /// The new labels, or `None` when unchanged.
    pub fn apply(&self, current: &HashMap<String, String>) -> Option<HashMap<String, String>> {
        if self.labels.is_empty() && !self.no_label {
            return None;
        }
        let mut labels = if self.no_label {
            HashMap::new()
        } else {
            current.clone()
        };
        labels.extend(self.labels.iter().cloned());
        Some(labels)
    }
}

/// `--insert-headers X-Forwarded-For=true,X-Forwarded-Port=true` (repeatable).
pub fn insert_headers(values: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for v in values {
        for (k, v) in key_values(v).map_err(anyhow::Error::msg)? {
            out.insert(k, v);
        }
    }
    Ok(out)
}

/// `--session-persistence type=APP_COOKIE,cookie_name=JSESSIONID`.
pub fn session_persistence(s: &str) -> Result<pb::SessionPersistence, String> {
    let mut out = pb::SessionPersistence::default();
    for (k, v) in key_values(s)? {
        match k.as_str() {
            "type" => out.r#type = enums::parse::<pb::SessionPersistenceType>(&v)?.into(),
            "cookie_name" => out.cookie_name = v,
            other => {
                return Err(format!(
                    "{other:?} is not a session persistence key (type, cookie_name)"
                ));
            }
        }
    }
    if out.r#type == 0 {
        return Err("type=SOURCE_IP|HTTP_COOKIE|APP_COOKIE is required".into());
    }
    Ok(out)
}

/// `ADDRESS:PORT` (`[v6]:PORT` too).
pub fn host_port(s: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("{s:?} is not ADDRESS:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        host.to_owned(),
        port.parse().with_context(|| format!("bad port in {s:?}"))?,
    ))
}

/// How an agent this binary runs starts the native data plane: `lbctl dataplane` (this very
/// binary, so `cargo run -p lbctl` needs nothing else built).
pub fn dataplane_command() -> Vec<std::ffi::OsString> {
    match std::env::current_exe() {
        Ok(exe) => vec![exe.into_os_string(), "dataplane".into()],
        Err(_) => vec!["lbctl".into(), "dataplane".into()],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn insert_headers_parse_and_merge() {
        let h = insert_headers(&[
            "X-Forwarded-For=true, X-Forwarded-Port=false".into(),
            "X-Forwarded-Proto=true".into(),
        ])
        .unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h["X-Forwarded-For"], "true");
        assert_eq!(h["X-Forwarded-Port"], "false");
        assert!(insert_headers(&["X-Forwarded-For".into()]).is_err());
        assert!(insert_headers(&["=true".into()]).is_err());
    }

    #[test]
    fn session_persistence_parses() {
        let p = session_persistence("type=APP_COOKIE,cookie_name=JSESSIONID").unwrap();
        assert_eq!(p.r#type(), pb::SessionPersistenceType::AppCookie);
        assert_eq!(p.cookie_name, "JSESSIONID");
        let p = session_persistence("type=source_ip").unwrap();
        assert_eq!(p.r#type(), pb::SessionPersistenceType::SourceIp);
        assert!(session_persistence("cookie_name=x").is_err());
        assert!(
            session_persistence("type=STICKY")
                .unwrap_err()
                .contains("SOURCE_IP, HTTP_COOKIE, APP_COOKIE")
        );
        assert!(session_persistence("type=SOURCE_IP,timeout=5").is_err());
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            host_port("127.0.0.1:80").unwrap(),
            ("127.0.0.1".to_owned(), 80)
        );
        assert_eq!(host_port("[::1]:8080").unwrap(), ("::1".to_owned(), 8080));
        assert!(host_port("web").is_err());
    }

    #[test]
    fn tags_on_set_and_unset() {
        let now = vec!["a".to_owned(), "b".to_owned()];
        let set = SetTags {
            tags: vec!["c".into(), "a".into()],
            no_tag: false,
        };
        assert_eq!(set.apply(&now).unwrap(), ["a", "b", "c"]);
        let replace = SetTags {
            tags: vec!["c".into()],
            no_tag: true,
        };
        assert_eq!(replace.apply(&now).unwrap(), ["c"]);
        assert!(SetTags::default().apply(&now).is_none());
        let unset = UnsetTags {
            tags: vec!["a".into()],
            all_tag: false,
        };
        assert_eq!(unset.apply(&now).unwrap(), ["b"]);
    }

    #[test]
    fn labels_on_set() {
        assert_eq!(
            key_value("tier=gold").unwrap(),
            ("tier".to_owned(), "gold".to_owned())
        );
        assert!(key_value("tier").is_err());
        assert!(key_value("a=1,b=2").is_err());
        let now: HashMap<String, String> = [("tier".to_owned(), "gold".to_owned())].into();
        let set = SetLabels {
            labels: vec![("zone".into(), "a".into())],
            no_label: false,
        };
        let labels = set.apply(&now).unwrap();
        assert_eq!(
            (labels["tier"].as_str(), labels["zone"].as_str()),
            ("gold", "a")
        );
        let replace = SetLabels {
            labels: vec![("zone".into(), "b".into())],
            no_label: true,
        };
        assert_eq!(replace.apply(&now).unwrap().len(), 1);
        assert!(SetLabels::default().apply(&now).is_none());
    }

    #[test]
    fn masks_record_only_what_is_given() {
        let mut member = pb::Member::default();
        let mut mask = Mask::default();
        mask.set("weight", &mut member.weight, Some(Some(5)));
        mask.set("name", &mut member.name, None);
        mask.clear("backup", &mut member.backup, false);
        assert_eq!(mask.paths(), ["weight"]);
        assert_eq!(member.weight, Some(5));
        assert!(Mask::default().finish().is_err());
    }
}

/// `--alpn-protocol`, `--tls-version`, `--tls-ciphers` (listeners and pools, as Octavia's CLI).
#[derive(clap::Args, Debug, Default)]
pub struct TlsOptionArgs {
    /// An ALPN protocol (h2, http/1.1, http/1.0); repeat for more, in order of preference.
    #[arg(long = "alpn-protocol", value_name = "PROTOCOL")]
    pub alpn_protocols: Vec<String>,
    /// A TLS version allowed (SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3); repeat for more.
    #[arg(long = "tls-version", value_name = "VERSION")]
    pub tls_versions: Vec<String>,
    /// OpenSSL cipher names separated by ':' (TLS_* names are TLS 1.3 suites).
    #[arg(long, value_name = "CIPHERS")]
    pub tls_ciphers: Option<String>,
}

impl TlsOptionArgs {
    /// Writes the options given into the three fields, recording each in `mask`.
    pub fn apply(
        self,
        (alpn, versions, ciphers): (&mut Vec<String>, &mut Vec<String>, &mut String),
        mask: &mut Mask,
    ) {
        if !self.alpn_protocols.is_empty() {
            mask.set("alpn_protocols", alpn, Some(self.alpn_protocols));
        }
        if !self.tls_versions.is_empty() {
            mask.set("tls_versions", versions, Some(self.tls_versions));
        }
        mask.set("tls_ciphers", ciphers, self.tls_ciphers);
    }
}

/// `--alpn-protocols`, `--tls-versions`, `--tls-ciphers` on unset: back to the defaults.
#[derive(clap::Args, Debug, Default)]
pub struct UnsetTlsOptions {
    /// Back to the default ALPN protocols.
    #[arg(long)]
    pub alpn_protocols: bool,
    /// Back to the default TLS versions.
    #[arg(long)]
    pub tls_versions: bool,
    /// Back to the default ciphers.
    #[arg(long)]
    pub tls_ciphers: bool,
}

impl UnsetTlsOptions {
    pub fn apply(
        &self,
        (alpn, versions, ciphers): (&mut Vec<String>, &mut Vec<String>, &mut String),
        mask: &mut Mask,
    ) {
        mask.clear("alpn_protocols", alpn, self.alpn_protocols);
        mask.clear("tls_versions", versions, self.tls_versions);
        mask.clear("tls_ciphers", ciphers, self.tls_ciphers);
    }
}
