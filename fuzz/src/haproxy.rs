//! `render_haproxy`: the HAProxy renderer (desired configs -> haproxy.cfg and its certificate
//! files).
//!
//! Properties, when rendering succeeds (the renderer may refuse anything, but must not panic):
//! - the text holds no control character but '\n';
//! - every line is one the renderer means to write: a section header naming a valid proxy, a
//!   directive starting with a keyword it uses, or one of its own comments. HAProxy reads each line
//!   as words (spaces, quotes, '\', '#' as its parser does): no directive carries a comment, a
//!   double quote, an escape or an unterminated quote, and none has more than 64 words;
//! - the sections are those the configs imply: one `frontend` per listener, one `backend` per
//!   pool, one `server` per member, one `# load balancer` per load balancer; every
//!   `default_backend`/`use_backend` names a backend of the text; every `crt-list` is a file
//!   rendered with it;
//! - redirect targets are log-format strings with every '%' doubled (no `%[...]` sample fetch);
//! - certificate files have plain names and hold only PEM lines; crt-lists name only certificate
//!   files rendered with them.
//!
//! So no field value can add a line, a section or a keyword to the config. (The input's strings
//! are not compared with the text: the renderer may accept " 200\n" as an expected code since it
//! writes the parsed number.)
use std::{collections::HashSet, path::Path};

use lbaas_agent::driver::haproxy::render::{ConfigRenderer, Rendered};
use prost::Message as _;

use crate::Device;

pub const STATS_SOCKET: &str = "/run/lbaas-agent/haproxy/stats.sock";
pub const CERT_DIR: &str = "/run/lbaas-agent/haproxy/certs";

/// The keywords the renderer starts a directive with. A new directive in the renderer needs its
/// keyword here (the target fails with "unexpected keyword" until then).
const KEYWORDS: &[&str] = &[
    "stats",
    "hard-stop-after",
    "ssl-default-bind-options",
    "ssl-default-server-options",
    "timeout",
    "retries",
    "option",
    "mode",
    "bind",
    "disabled",
    "maxconn",
    "acl",
    "tcp-request",
    "http-request",
    "use_backend",
    "default_backend",
    "balance",
    "stick-table",
    "stick",
    "cookie",
    "server",
    "http-check",
];

/// HAProxy's MAX_LINE_ARGS: words past it make the line an error.
const MAX_WORDS: usize = 64;

pub fn render_haproxy(data: &[u8]) {
    let Ok(device) = Device::decode(data) else {
        return;
    };
    let renderer = ConfigRenderer {
        stats_socket: Path::new(STATS_SOCKET),
    };
    let Ok(rendered) = renderer.render_device(&device.load_balancers, Path::new(CERT_DIR)) else {
        return;
    };
    check(&device, &rendered);
}

/// A config line split as HAProxy's `parse_line` splits it.
#[derive(Debug, Default)]
struct Words {
    words: Vec<String>,
    /// A '#' outside quotes: the rest of the line is a comment.
    comment: bool,
    /// A double-quoted part (escapes and environment variables are expanded there).
    double_quote: bool,
    /// A backslash outside single quotes (an escape).
    escape: bool,
    /// A quote left open at the end of the line.
    unterminated: bool,
}

fn words(line: &str) -> Words {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Single,
        Double,
    }
    let mut out = Words::default();
    let mut state = State::Plain;
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match state {
            State::Plain => match c {
                ' ' | '\t' => {
                    if let Some(w) = word.take() {
                        out.words.push(w);
                    }
                }
                '#' => {
                    out.comment = true;
                    break;
                }
                '\'' => {
                    state = State::Single;
                    word.get_or_insert_with(String::new);
                }
                '"' => {
                    out.double_quote = true;
                    state = State::Double;
                    word.get_or_insert_with(String::new);
                }
                '\\' => {
                    out.escape = true;
                    let w = word.get_or_insert_with(String::new);
                    w.extend(chars.next());
                }
                c => word.get_or_insert_with(String::new).push(c),
            },
            State::Single => match c {
                '\'' => state = State::Plain,
                c => word.get_or_insert_with(String::new).push(c),
            },
            State::Double => match c {
                '"' => state = State::Plain,
                '\\' => {
                    out.escape = true;
                    let w = word.get_or_insert_with(String::new);
                    w.extend(chars.next());
                }
                c => word.get_or_insert_with(String::new).push(c),
            },
        }
    }
    if state != State::Plain {
        out.unterminated = true;
    }
    if let Some(w) = word.take() {
        out.words.push(w);
    }
    out
}

/// A proxy or server name HAProxy accepts: letters, digits, '-', '_', '.' and ':'.
fn proxy_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn check(device: &Device, rendered: &Rendered) {
    let text = &rendered.text;
    let fail = |line_no: usize, line: &str, why: &str| -> ! {
        panic!(
            "line {}: {why}: {line:?}\n--- rendered config ---\n{text}",
            line_no + 1
        )
    };
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        panic!("the config holds control character {c:?}\n--- rendered config ---\n{text}");
    }
    assert!(
        text.ends_with('\n'),
        "the config does not end with a newline"
    );

    let mut frontends = 0;
    let mut backends = HashSet::new();
    let mut backend_sections = 0;
    let mut servers = 0;
    let mut load_balancers = 0;
    let mut sections = HashSet::new();
    let mut used_backends = Vec::new();
    let mut crt_lists = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        // Comments of the renderer's own: the banner, one per load balancer, and two in sections.
        if n == 0 && line.starts_with("# ") {
            continue;
        }
        if let Some(id) = line.strip_prefix("# load balancer ") {
            if !proxy_name(id) {
                fail(
                    n,
                    line,
                    "load balancer comment with an id HAProxy cannot name",
                );
            }
            load_balancers += 1;
            continue;
        }
        if let Some(directive) = line.strip_prefix("    ") {
            if directive.starts_with(char::is_whitespace) {
                fail(n, line, "unexpected indentation");
            }
            if directive.starts_with('#') {
                let policy = directive
                    .strip_prefix("# policy ")
                    .and_then(|rest| rest.strip_suffix(" has no rules: it never matches"));
                if directive.starts_with("# Re-encryption: ") || policy.is_some_and(proxy_name) {
                    continue;
                }
                fail(n, line, "a comment the renderer does not write");
            }
            let w = words(directive);
            if w.comment {
                fail(
                    n,
                    line,
                    "a '#' outside quotes: HAProxy would read a comment",
                );
            }
            if w.double_quote || w.escape || w.unterminated {
                fail(
                    n,
                    line,
                    "a double quote, a backslash escape or an open quote",
                );
            }
            if w.words.len() > MAX_WORDS {
                fail(n, line, "more words than HAProxy reads on a line");
            }
            let Some(keyword) = w.words.first() else {
                fail(n, line, "an empty directive");
            };
            if !KEYWORDS.contains(&keyword.as_str()) {
                fail(n, line, "unexpected keyword");
            }
            match (keyword.as_str(), w.words.get(1).map(String::as_str)) {
                ("server", Some(name)) => {
                    if !name.strip_prefix("m_").is_some_and(proxy_name) {
                        fail(n, line, "a server name HAProxy cannot take");
                    }
                    servers += 1;
                }
                ("default_backend" | "use_backend", Some(name)) => {
                    used_backends.push((n, line, name.to_owned()));
                }
                ("bind", _) => {
                    if let Some(i) = w.words.iter().position(|x| x == "crt-list") {
                        match w.words.get(i + 1) {
                            Some(path) => crt_lists.push((n, line, path.clone())),
                            None => fail(n, line, "crt-list without a file"),
                        }
                    }
                }
                ("http-request", Some("redirect")) => {
                    // `location <fmt>` / `prefix <fmt>`: log-format, where '%' must be doubled.
                    for target in w
                        .words
                        .windows(2)
                        .filter(|p| p[0] == "location" || p[0] == "prefix")
                        .map(|p| &p[1])
                    {
                        if target.replace("%%", "").contains('%') {
                            fail(n, line, "a redirect target with a log-format '%' sequence");
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        // A section header.
        let w = words(line);
        if w.comment || w.double_quote || w.escape || w.unterminated {
            fail(n, line, "a section line HAProxy would not read as written");
        }
        match w.words.as_slice() {
            [s] if s == "global" || s == "defaults" => {
                if !sections.insert(s.clone()) {
                    fail(n, line, "a second global/defaults section");
                }
            }
            [s, name] if s == "frontend" => {
                if !name.strip_prefix("l_").is_some_and(proxy_name) {
                    fail(n, line, "a frontend name HAProxy cannot take");
                }
                frontends += 1;
            }
            [s, name] if s == "backend" => {
                if !name.strip_prefix("p_").is_some_and(proxy_name) {
                    fail(n, line, "a backend name HAProxy cannot take");
                }
                backends.insert(name.clone());
                backend_sections += 1;
            }
            _ => fail(n, line, "not a section the renderer writes"),
        }
    }

    let lbs = &device.load_balancers;
    let listeners: usize = lbs.iter().map(|lb| lb.listeners.len()).sum();
    let pools: usize = lbs.iter().map(|lb| lb.pools.len()).sum();
    let members: usize = lbs
        .iter()
        .flat_map(|lb| &lb.pools)
        .map(|p| p.members.len())
        .sum();
    let counts = [
        ("`# load balancer` comments", load_balancers, lbs.len()),
        ("frontends", frontends, listeners),
        ("backends", backend_sections, pools),
        ("servers", servers, members),
    ];
    for (what, found, expected) in counts {
        assert_eq!(
            found, expected,
            "{what}: the text has {found}, the configs imply {expected}\n--- rendered config ---\n{text}"
        );
    }
    for (n, line, name) in used_backends {
        if !backends.contains(&name) {
            fail(n, line, "names a backend the config does not have");
        }
    }

    // Certificate files: plain names in the certificate directory, PEM lines only.
    let files = &rendered.cert_files;
    for (name, content) in files {
        let plain = !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        assert!(plain, "certificate file name {name:?}");
        assert!(
            !content.chars().any(|c| c.is_control() && c != '\n'),
            "certificate file {name} holds a control character"
        );
        if name.ends_with(".crtlist") {
            for entry in content.lines() {
                let listed = entry
                    .strip_prefix(CERT_DIR)
                    .and_then(|e| e.strip_prefix('/'))
                    .filter(|e| e.ends_with(".pem") && files.contains_key(*e));
                assert!(
                    listed.is_some(),
                    "crt-list {name} names {entry:?}, not a certificate file rendered with it"
                );
            }
        } else if name.ends_with(".pem") {
            for l in content.lines() {
                let armor = (l.starts_with("-----BEGIN ") || l.starts_with("-----END "))
                    && l.ends_with("-----");
                let base64 = l
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                assert!(
                    !l.is_empty() && (armor || base64),
                    "certificate file {name} holds a line that is not PEM: {l:?}"
                );
            }
        } else {
            panic!("unexpected certificate file {name:?}");
        }
    }
    for (n, line, path) in crt_lists {
        let rendered_file = path
            .strip_prefix(CERT_DIR)
            .and_then(|p| p.strip_prefix('/'))
            .is_some_and(|p| p.ends_with(".crtlist") && files.contains_key(p));
        if !rendered_file {
            fail(n, line, "crt-list that is not a rendered file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_haproxy_does() {
        let w = words("acl r_x path -m reg -- '^/a\\d' x");
        assert_eq!(
            w.words,
            ["acl", "r_x", "path", "-m", "reg", "--", "^/a\\d", "x"]
        );
        assert!(!w.escape && !w.comment && !w.unterminated);
        assert!(words("acl a path /x#y").comment);
        assert!(words("acl a path /x\\ y").escape);
        assert!(words("acl a path 'x").unterminated);
        assert!(words("acl a path \"x\"").double_quote);
    }
}
