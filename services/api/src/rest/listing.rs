//! Octavia's list conventions over JSON objects: a filter on any top-level attribute
//! (`?name=web&admin_state_up=true`), `tags`/`tags-any`/`not-tags`/`not-tags-any`, `sort`
//! (`name:asc,id:desc`, or `sort_key`/`sort_dir`), `fields`, and pages by `limit` and `marker` (the
//! last id seen) with `<plural>_links`. Parameters that name no attribute are ignored, as Octavia
//! ignores them.
use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::RestError;

/// Query parameters that are not attribute filters.
const CONTROL: &[&str] = &[
    "limit",
    "marker",
    "page_reverse",
    "sort",
    "sort_key",
    "sort_dir",
    "fields",
    "tags",
    "tags-any",
    "tags_any",
    "not-tags",
    "not_tags",
    "not-tags-any",
    "not_tags_any",
    "cascade",
    "additive_only",
];

fn values<'a>(query: &'a [(String, String)], keys: &[&str]) -> Vec<&'a str> {
    query
        .iter()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// Whether `attribute` (one JSON value) is what the query string `wanted` names.
fn matches(attribute: &Value, wanted: &str) -> bool {
    match attribute {
        Value::String(s) => s == wanted,
        Value::Bool(b) => wanted.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == wanted || n.as_f64() == wanted.parse::<f64>().ok(),
        Value::Null => wanted.is_empty() || wanted.eq_ignore_ascii_case("none"),
        // `listeners=ID`-style filters on id lists.
        Value::Array(items) => items.iter().any(|i| {
            i.get("id").and_then(Value::as_str) == Some(wanted) || i.as_str() == Some(wanted)
        }),
        Value::Object(_) => false,
    }
}

fn tags_of(item: &Map<String, Value>) -> Vec<&str> {
    item.get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn keep(item: &Map<String, Value>, query: &[(String, String)]) -> bool {
    // Several values of one attribute: any of them (Neutron's and Octavia's reading).
    let mut by_key: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (k, v) in query {
        if !CONTROL.contains(&k.as_str()) {
            by_key.entry(k.as_str()).or_default().push(v.as_str());
        }
    }
    for (key, wanted) in by_key {
        if let Some(attribute) = item.get(key)
            && !wanted.iter().any(|w| matches(attribute, w))
        {
            return false;
        }
    }
    let tags = tags_of(item);
    let all = values(query, &["tags"]);
    let any = values(query, &["tags-any", "tags_any"]);
    let not_all = values(query, &["not-tags", "not_tags"]);
    let not_any = values(query, &["not-tags-any", "not_tags_any"]);
    (all.iter().all(|t| tags.contains(t)))
        && (any.is_empty() || any.iter().any(|t| tags.contains(t)))
        && (not_all.is_empty() || !not_all.iter().all(|t| tags.contains(t)))
        && !not_any.iter().any(|t| tags.contains(t))
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// The sort keys asked for, each with `true` for descending.
fn sort_keys(query: &[(String, String)]) -> Result<Vec<(String, bool)>, RestError> {
    let mut keys = Vec::new();
    for spec in values(query, &["sort"]) {
        let (key, dir) = spec.split_once(':').unwrap_or((spec, "asc"));
        keys.push((key.to_owned(), direction(dir)?));
    }
    let dirs = values(query, &["sort_dir"]);
    for (i, key) in values(query, &["sort_key"]).into_iter().enumerate() {
        let dir = dirs.get(i).or(dirs.first()).copied().unwrap_or("asc");
        keys.push((key.to_owned(), direction(dir)?));
    }
    Ok(keys)
}

fn direction(dir: &str) -> Result<bool, RestError> {
    match dir {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(RestError::bad_request(format!(
            "sort direction {other:?} is not asc or desc"
        ))),
    }
}

/// One page of `items` (JSON objects) as Octavia answers a list: `{plural: [...], plural_links: [...]}`.
/// `base` is the URL of the list, for the links.
pub fn respond(
    items: Vec<Value>,
    query: &[(String, String)],
    plural: &str,
    base: &str,
) -> Result<Value, RestError> {
    let mut items: Vec<Map<String, Value>> = items
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(o) => Some(o),
            _ => None,
        })
        .filter(|o| keep(o, query))
        .collect();
    let keys = sort_keys(query)?;
    if let Some((key, _)) = keys
        .iter()
        .find(|(k, _)| items.first().is_some_and(|i| !i.contains_key(k)))
    {
        return Err(RestError::bad_request(format!(
            "cannot sort on {key:?}: not an attribute of {plural}"
        )));
    }
    if !keys.is_empty() {
        items.sort_by(|a, b| {
            keys.iter()
                .map(|(k, desc)| {
                    let o = compare(
                        a.get(k).unwrap_or(&Value::Null),
                        b.get(k).unwrap_or(&Value::Null),
                    );
                    if *desc { o.reverse() } else { o }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
    }
    if values(query, &["page_reverse"]).first() == Some(&"true") {
        items.reverse();
    }
    let id_of = |o: &Map<String, Value>| o.get("id").and_then(Value::as_str).map(str::to_owned);
    let marker = values(query, &["marker"]).first().map(|m| (*m).to_owned());
    if let Some(marker) = &marker {
        let at = items
            .iter()
            .position(|o| id_of(o).as_deref() == Some(marker.as_str()))
            .ok_or_else(|| RestError::not_found(format!("marker {marker} could not be found")))?;
        items.drain(..=at);
    }
    let limit = match values(query, &["limit"]).first() {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => {
                return Err(RestError::bad_request(format!(
                    "limit {l:?} is not a whole number"
                )));
            }
        },
    };
    let mut links = Vec::new();
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.truncate(limit);
        if let Some(last) = items.last().and_then(id_of) {
            let rest: String = query
                .iter()
                .filter(|(k, _)| k != "marker" && k != "limit")
                .map(|(k, v)| format!("&{}={}", encode(k), encode(v)))
                .collect();
            links.push(serde_json::json!({
                "rel": "next",
                "href": format!("{base}?limit={limit}&marker={last}{rest}"),
            }));
        }
    }
    let fields = values(query, &["fields"]);
    if !fields.is_empty() {
        for item in &mut items {
            item.retain(|k, _| fields.contains(&k.as_str()));
        }
    }
    let mut out = Map::new();
    out.insert(
        plural.to_owned(),
        Value::Array(items.into_iter().map(Value::Object).collect()),
    );
    out.insert(format!("{plural}_links"), Value::Array(links));
    Ok(Value::Object(out))
}

/// Percent-encodes a query component (what links carry back).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"id": "a", "name": "web", "admin_state_up": true, "weight": 3, "tags": ["x", "y"]}),
            json!({"id": "b", "name": "db", "admin_state_up": false, "weight": 1, "tags": ["y"]}),
            json!({"id": "c", "name": "web", "admin_state_up": true, "weight": 2, "tags": []}),
        ]
    }

    fn ids(v: &Value, plural: &str) -> Vec<String> {
        v[plural]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn filters_tags_sort_and_pages() {
        let base = "http://h/v2/lbaas/members";
        let r = respond(items(), &q(&[("name", "web")]), "members", base).unwrap();
        assert_eq!(ids(&r, "members"), ["a", "c"]);
        let r = respond(items(), &q(&[("admin_state_up", "False")]), "members", base).unwrap();
        assert_eq!(ids(&r, "members"), ["b"]);
        let r = respond(
            items(),
            &q(&[("weight", "2"), ("colour", "red")]),
            "members",
            base,
        )
        .unwrap();
        assert_eq!(ids(&r, "members"), ["c"]);
        let r = respond(items(), &q(&[("tags", "x,y")]), "members", base).unwrap();
        assert_eq!(ids(&r, "members"), ["a"]);
        let r = respond(items(), &q(&[("not-tags-any", "x")]), "members", base).unwrap();
        assert_eq!(ids(&r, "members"), ["b", "c"]);
        let r = respond(items(), &q(&[("sort", "weight:desc")]), "members", base).unwrap();
        assert_eq!(ids(&r, "members"), ["a", "c", "b"]);
        let r = respond(
            items(),
            &q(&[("sort_key", "name"), ("sort_dir", "asc")]),
            "members",
            base,
        )
        .unwrap();
        assert_eq!(ids(&r, "members"), ["b", "a", "c"]);
        let r = respond(items(), &q(&[("limit", "2")]), "members", base).unwrap();
        assert_eq!(ids(&r, "members"), ["a", "b"]);
        assert_eq!(
            r["members_links"][0]["href"],
            "http://h/v2/lbaas/members?limit=2&marker=b"
        );
        let r = respond(
            items(),
            &q(&[("limit", "2"), ("marker", "b")]),
            "members",
            base,
        )
        .unwrap();
        assert_eq!(ids(&r, "members"), ["c"]);
        assert_eq!(r["members_links"], json!([]));
        let r = respond(items(), &q(&[("fields", "id")]), "members", base).unwrap();
        assert_eq!(r["members"][0], json!({"id": "a"}));
        assert!(respond(items(), &q(&[("marker", "zz")]), "members", base).is_err());
        assert!(respond(items(), &q(&[("sort", "colour")]), "members", base).is_err());
    }
}
