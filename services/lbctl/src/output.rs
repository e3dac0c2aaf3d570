//! Printing API objects: tables (the default, shaped like the `openstack` CLI's), JSON, YAML and
//! bare values. Objects are first turned into [`Val`], an ordered tree, so every format shows the
//! same fields under the proto's names.
use std::fmt::Write as _;

/// A printable value. Objects keep their fields in proto order.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Unix milliseconds: a number in JSON and YAML, a UTC date in tables (empty when 0).
    Time(i64),
    Str(String),
    List(Vec<Val>),
    Obj(Vec<(String, Val)>),
}

impl Val {
    /// The field `name` of an object.
    pub fn get(&self, name: &str) -> Option<&Val> {
        match self {
            Val::Obj(fields) => fields.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Str(s.to_owned())
    }
}

impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Str(s)
    }
}

impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Str(s.clone())
    }
}

impl From<bool> for Val {
    fn from(b: bool) -> Self {
        Val::Bool(b)
    }
}

impl From<i32> for Val {
    fn from(n: i32) -> Self {
        Val::Int(i64::from(n))
    }
}

impl From<i64> for Val {
    fn from(n: i64) -> Self {
        Val::Int(n)
    }
}

impl From<u64> for Val {
    fn from(n: u64) -> Self {
        Val::UInt(n)
    }
}

impl From<f64> for Val {
    fn from(n: f64) -> Self {
        Val::Float(n)
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

impl From<&[String]> for Val {
    fn from(items: &[String]) -> Self {
        Val::List(items.iter().map(Val::from).collect())
    }
}

impl From<&Vec<String>> for Val {
    fn from(items: &Vec<String>) -> Self {
        Val::from(items.as_slice())
    }
}

/// Builds an object field by field.
#[derive(Default)]
pub struct ObjBuilder(Vec<(String, Val)>);

impl ObjBuilder {
    pub fn field(mut self, name: &str, value: impl Into<Val>) -> Self {
        self.0.push((name.to_owned(), value.into()));
        self
    }

    pub fn build(self) -> Val {
        Val::Obj(self.0)
    }
}

pub fn obj() -> ObjBuilder {
    ObjBuilder::default()
}

impl serde::Serialize for Val {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        match self {
            Val::Null => s.serialize_none(),
            Val::Bool(b) => s.serialize_bool(*b),
            Val::Int(n) | Val::Time(n) => s.serialize_i64(*n),
            Val::UInt(n) => s.serialize_u64(*n),
            Val::Float(n) => s.serialize_f64(*n),
            Val::Str(v) => s.serialize_str(v),
            Val::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Val::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// The output formats (`-o`, or `-f` as the openstack CLI spells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Boxed tables (list: one row per object; show: Field | Value).
    Table,
    /// The object(s) as JSON, enum values by name, proto field names.
    Json,
    /// The same as YAML.
    Yaml,
    /// Bare values, one object per line (show: one field per line): for scripts.
    Value,
}

/// A UTC date and time for Unix milliseconds (`2024-05-01T12:00:00Z`).
pub fn format_time(ms: i64) -> String {
    if ms == 0 {
        return String::new();
    }
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A value as a table cell: lists one item per line, objects as `key=value, ...`.
pub fn cell(v: &Val) -> String {
    match v {
        Val::Null => "None".to_owned(),
        Val::Bool(true) => "True".to_owned(),
        Val::Bool(false) => "False".to_owned(),
        Val::Int(n) => n.to_string(),
        Val::UInt(n) => n.to_string(),
        Val::Float(n) => n.to_string(),
        Val::Time(ms) => format_time(*ms),
        Val::Str(s) => s.clone(),
        Val::List(items) => items.iter().map(cell).collect::<Vec<_>>().join("\n"),
        Val::Obj(fields) => fields
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A boxed table as the openstack CLI draws it; cells may span several lines.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let split = |s: &str| -> Vec<String> {
        if s.is_empty() {
            vec![String::new()]
        } else {
            s.lines().map(str::to_owned).collect()
        }
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate().take(widths.len()) {
            for line in split(c) {
                widths[i] = widths[i].max(line.chars().count());
            }
        }
    }
    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let line = |out: &mut String, cells: &[String]| {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).map_or("", String::as_str);
            let pad = w - c.chars().count();
            let _ = write!(out, " {c}{} |", " ".repeat(pad));
        }
        out.push('\n');
    };
    let mut out = rule.clone();
    line(
        &mut out,
        &headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    out.push_str(&rule);
    for row in rows {
        let cells: Vec<Vec<String>> = (0..widths.len())
            .map(|i| split(row.get(i).map_or("", String::as_str)))
            .collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(1);
        for n in 0..height {
            let physical: Vec<String> = cells
                .iter()
                .map(|c| c.get(n).cloned().unwrap_or_default())
                .collect();
            line(&mut out, &physical);
        }
    }
    if !rows.is_empty() {
        out.push_str(&rule);
    }
    out
}

fn needs_quotes(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    let Some(first) = s.chars().next() else {
        return true;
    };
    if s.trim() != s
        || RESERVED.contains(&s.to_ascii_lowercase().as_str())
        || s.chars().any(char::is_control)
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
    {
        return true;
    }
    if !(first.is_alphanumeric()
        || matches!(
            first,
            '/' | '.' | '_' | '(' | '$' | '^' | '<' | '=' | '+' | ';'
        ))
    {
        return true;
    }
    // Anything a YAML reader could take for a number or a date.
    first.is_ascii_digit()
        && s.chars()
            .all(|c| c.is_ascii_digit() || "._:+-eE".contains(c))
        || s.parse::<f64>().is_ok()
}

fn yaml_scalar(v: &Val) -> String {
    match v {
        Val::Null => "null".to_owned(),
        Val::Bool(b) => b.to_string(),
        Val::Int(n) | Val::Time(n) => n.to_string(),
        Val::UInt(n) => n.to_string(),
        // YAML spells what JSON cannot hold (serde_json writes null for them).
        Val::Float(n) if n.is_nan() => ".nan".to_owned(),
        Val::Float(n) if n.is_infinite() => if *n > 0.0 { ".inf" } else { "-.inf" }.to_owned(),
        Val::Float(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{n:.1}"),
        Val::Float(n) => n.to_string(),
        Val::Str(s) if needs_quotes(s) => {
            serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
        }
        Val::Str(s) => s.clone(),
        Val::List(_) => "[]".to_owned(),
        Val::Obj(_) => "{}".to_owned(),
    }
}

/// A block scalar (`|` or `|-`) for a multi-line string YAML can keep as it is.
fn yaml_block(s: &str, indent: usize) -> Option<String> {
    if !s.contains('\n') || s.starts_with([' ', '\n']) || s.ends_with("\n\n") {
        return None;
    }
    if s.chars().any(|c| c.is_control() && c != '\n') || s.lines().any(|l| l.ends_with(' ')) {
        return None;
    }
    let (marker, body) = match s.strip_suffix('\n') {
        Some(body) => ("|", body),
        None => ("|-", s),
    };
    let pad = " ".repeat(indent);
    let mut out = format!("{marker}\n");
    for line in body.split('\n') {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{pad}{line}");
        }
    }
    Some(out)
}

fn is_nested(v: &Val) -> bool {
    matches!(v, Val::List(items) if !items.is_empty())
        || matches!(v, Val::Obj(fields) if !fields.is_empty())
}

fn yaml_into(out: &mut String, v: &Val, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Val::Obj(fields) if !fields.is_empty() => {
            for (k, v) in fields {
                let key = if needs_quotes(k) {
                    yaml_scalar(&Val::Str(k.clone()))
                } else {
                    k.clone()
                };
                match v {
                    Val::Obj(_) if is_nested(v) => {
                        let _ = writeln!(out, "{pad}{key}:");
                        yaml_into(out, v, indent + 2);
                    }
                    Val::List(_) if is_nested(v) => {
                        let _ = writeln!(out, "{pad}{key}:");
                        yaml_into(out, v, indent);
                    }
                    Val::Str(s) => match yaml_block(s, indent + 2) {
                        Some(block) => {
                            let _ = write!(out, "{pad}{key}: {block}");
                        }
                        None => {
                            let _ = writeln!(out, "{pad}{key}: {}", yaml_scalar(v));
                        }
                    },
                    _ => {
                        let _ = writeln!(out, "{pad}{key}: {}", yaml_scalar(v));
                    }
                }
            }
        }
        Val::List(items) if !items.is_empty() => {
            for item in items {
                if is_nested(item) {
                    let mut inner = String::new();
                    yaml_into(&mut inner, item, indent + 2);
                    // The first line of the item goes after the dash.
                    let first = inner.get(indent + 2..).unwrap_or_default();
                    let _ = write!(out, "{pad}- {first}");
                } else if let Val::Str(s) = item
                    && let Some(block) = yaml_block(s, indent + 2)
                {
                    let _ = write!(out, "{pad}- {block}");
                } else {
                    let _ = writeln!(out, "{pad}- {}", yaml_scalar(item));
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", yaml_scalar(other));
        }
    }
}

/// A value as a YAML document.
pub fn to_yaml(v: &Val) -> String {
    let mut out = String::new();
    yaml_into(&mut out, v, 0);
    out
}

/// How to print: the format and, optionally, the only columns (fields) to show.
#[derive(Debug, Clone)]
pub struct Printer {
    pub format: Format,
    /// Whether the format was asked for (`set`, quiet by default, prints when it was).
    pub explicit: bool,
    pub columns: Vec<String>,
}

impl Printer {
    fn keep(&self, name: &str) -> bool {
        self.columns.is_empty() || self.columns.iter().any(|c| c == name)
    }

    fn filtered(&self, v: &Val) -> Val {
        match v {
            Val::Obj(fields) if !self.columns.is_empty() => Val::Obj(
                // In the order asked for, as openstack's -c does.
                self.columns
                    .iter()
                    .filter_map(|c| fields.iter().find(|(k, _)| k == c).cloned())
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// One object: a Field | Value table (fields sorted, as openstack shows them).
    pub fn show_string(&self, v: &Val) -> String {
        let v = self.filtered(v);
        match self.format {
            Format::Json => json(&v),
            Format::Yaml => to_yaml(&v),
            Format::Value => match &v {
                Val::Obj(fields) => fields.iter().map(|(_, v)| cell(v) + "\n").collect(),
                other => cell(other) + "\n",
            },
            Format::Table => {
                let mut rows: Vec<Vec<String>> = match &v {
                    Val::Obj(fields) => fields
                        .iter()
                        .map(|(k, v)| vec![k.clone(), cell(v)])
                        .collect(),
                    other => vec![vec![String::new(), cell(other)]],
                };
                if self.columns.is_empty() {
                    rows.sort();
                }
                render_table(&["Field", "Value"], &rows)
            }
        }
    }

    /// Many objects: a table with `columns` (or those of -c), or every object whole as JSON/YAML.
    pub fn list_string(&self, columns: &[&str], items: &[Val]) -> String {
        match self.format {
            Format::Json => json(&Val::List(items.iter().map(|v| self.filtered(v)).collect())),
            Format::Yaml => to_yaml(&Val::List(items.iter().map(|v| self.filtered(v)).collect())),
            Format::Table | Format::Value => {
                let columns: Vec<&str> = if self.columns.is_empty() {
                    columns.to_vec()
                } else {
                    self.columns
                        .iter()
                        .map(String::as_str)
                        .filter(|c| self.keep(c))
                        .collect()
                };
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|v| {
                        columns
                            .iter()
                            .map(|c| v.get(c).map(cell).unwrap_or_default())
                            .collect()
                    })
                    .collect();
                if self.format == Format::Table {
                    render_table(&columns, &rows)
                } else {
                    rows.iter()
                        .map(|r| r.join(" ").replace('\n', ",") + "\n")
                        .collect()
                }
            }
        }
    }

    pub fn show(&self, v: &Val) {
        print!("{}", self.show_string(v));
    }

    pub fn list(&self, columns: &[&str], items: &[Val]) {
        print!("{}", self.list_string(columns, items));
    }
}

fn json(v: &Val) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn printer(format: Format) -> Printer {
        Printer {
            format,
            explicit: true,
            columns: Vec::new(),
        }
    }

    #[test]
    fn table_has_boxes_and_padding() {
        let table = render_table(
            &["id", "name"],
            &[
                vec!["1".into(), "web".into()],
                vec!["22".into(), String::new()],
            ],
        );
        assert_eq!(
            table,
            "+----+------+\n\
             | id | name |\n\
             +----+------+\n\
             | 1  | web  |\n\
             | 22 |      |\n\
             +----+------+\n"
        );
    }

    #[test]
    fn empty_list_is_just_the_header() {
        assert_eq!(render_table(&["id"], &[]), "+----+\n| id |\n+----+\n");
    }

    #[test]
    fn multi_line_cells_take_several_lines() {
        let table = render_table(
            &["Field", "Value"],
            &[vec!["listeners".into(), "a\nbbb".into()]],
        );
        assert_eq!(
            table,
            "+-----------+-------+\n\
             | Field     | Value |\n\
             +-----------+-------+\n\
             | listeners | a     |\n\
             |           | bbb   |\n\
             +-----------+-------+\n"
        );
    }

    #[test]
    fn show_sorts_fields_and_formats_cells() {
        let v = obj()
            .field("name", "web")
            .field("admin_state_up", Some(true))
            .field("tags", &vec!["a".to_owned(), "b".to_owned()])
            .field(
                "session_persistence",
                obj()
                    .field("type", "APP_COOKIE")
                    .field("cookie_name", "JSESSIONID")
                    .build(),
            )
            .field("weight", Option::<i32>::None)
            .build();
        let table = printer(Format::Table).show_string(&v);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["Field", "Value"],
                vec!["admin_state_up", "True"],
                vec!["name", "web"],
                vec![
                    "session_persistence",
                    "type=APP_COOKIE, cookie_name=JSESSIONID"
                ],
                vec!["tags", "a"],
                vec!["", "b"],
                vec!["weight", "None"],
            ]
        );
        // Every line is as wide as the rules.
        let widths: Vec<usize> = table.lines().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
    }

    #[test]
    fn list_uses_the_columns_and_c_picks() {
        let items = vec![
            obj()
                .field("id", "1")
                .field("name", "a")
                .field("x", 5)
                .build(),
            obj()
                .field("id", "2")
                .field("name", "b")
                .field("x", 6)
                .build(),
        ];
        let table = printer(Format::Table).list_string(&["id", "name"], &items);
        assert!(table.contains("| id | name |"), "{table}");
        assert!(!table.contains('5'));
        let mut p = printer(Format::Value);
        p.columns = vec!["x".into(), "id".into()];
        assert_eq!(p.list_string(&["id", "name"], &items), "5 1\n6 2\n");
    }

    #[test]
    fn json_keeps_field_order_and_types() {
        let v = obj()
            .field("id", "x")
            .field("protocol_port", 80)
            .field("admin_state_up", true)
            .field("create_time_ms", Val::Time(5))
            .build();
        let s = printer(Format::Json).show_string(&v);
        assert_eq!(
            s,
            "{\n  \"id\": \"x\",\n  \"protocol_port\": 80,\n  \"admin_state_up\": true,\n  \"create_time_ms\": 5\n}\n"
        );
    }

    #[test]
    fn yaml_nests_and_quotes() {
        let v = obj()
            .field("id", "abc")
            .field("vip_address", "127.0.0.1")
            .field("name", "")
            .field("flag", "true")
            .field("tags", Val::List(vec![]))
            .field("allowed_cidrs", &vec!["10.0.0.0/8".to_owned()])
            .field(
                "insert_headers",
                obj().field("X-Forwarded-For", "true").build(),
            )
            .field(
                "members",
                Val::List(vec![obj().field("address", "a").field("weight", 1).build()]),
            )
            .field("pem", "-----BEGIN-----\nAAA\n-----END-----\n")
            .field("message", "a: b")
            .build();
        assert_eq!(
            to_yaml(&v),
            "id: abc\n\
             vip_address: \"127.0.0.1\"\n\
             name: \"\"\n\
             flag: \"true\"\n\
             tags: []\n\
             allowed_cidrs:\n\
             - 10.0.0.0/8\n\
             insert_headers:\n  X-Forwarded-For: \"true\"\n\
             members:\n\
             - address: a\n  weight: 1\n\
             pem: |\n  -----BEGIN-----\n  AAA\n  -----END-----\n\
             message: \"a: b\"\n"
        );
    }

    #[test]
    fn floats_in_every_format() {
        let v = obj().field("score", 1.0).field("value", 0.637384).build();
        assert_eq!(cell(&Val::Float(1.0)), "1");
        assert_eq!(cell(&Val::Float(0.637384)), "0.637384");
        assert_eq!(to_yaml(&v), "score: 1.0\nvalue: 0.637384\n");
        assert_eq!(
            printer(Format::Json).show_string(&v),
            "{\n  \"score\": 1.0,\n  \"value\": 0.637384\n}\n"
        );
        assert_eq!(yaml_scalar(&Val::Float(f64::NAN)), ".nan");
    }

    #[test]
    fn times_are_dates_in_tables() {
        assert_eq!(format_time(0), "");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(cell(&Val::Time(86_400_000)), "1970-01-02T00:00:00Z");
    }
}
