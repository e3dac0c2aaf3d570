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

fn number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A duration: a number and a unit.
fn duration(s: &str) -> bool {
    s.strip_suffix("ms")
        .or_else(|| s.strip_suffix('s'))
        .is_some_and(number)
}

/// `<prefix><name>` with a name HAProxy accepts.
fn named(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(proxy_name)
}

/// `<open><name>)`, e.g. `req.cook(JSESSIONID)`.
fn call(s: &str, open: &str) -> bool {
    s.strip_prefix(open)
        .and_then(|rest| rest.strip_suffix(')'))
        .is_some_and(|arg| {
            !arg.is_empty()
                && !arg.contains([',', '(', ')'])
                && arg.bytes().all(|b| b.is_ascii_graphic())
        })
}

/// Whether a directive (its words) has a shape the renderer writes: the keyword, the keywords
/// after it, and only one word wherever it writes a value from the input. A line smuggled in
/// through a field (`http-request return ...`, `acl x ...`) fails this even when its keyword is
/// one the renderer uses.
fn directive_ok(w: &[String]) -> bool {
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        [
            "stats",
            "socket",
            _,
            "mode",
            "600",
            "level",
            "admin",
            "expose-fd",
            "listeners",
        ] => true,
        ["stats", "timeout", d] | ["hard-stop-after", d] => duration(d),
        [
            "ssl-default-bind-options" | "ssl-default-server-options",
            "ssl-min-ver",
            v,
        ] => v.starts_with("TLSv"),
        [
            "timeout",
            "connect" | "client" | "server" | "http-request" | "check",
            d,
        ] => duration(d),
        ["retries" | "maxconn", n] => number(n),
        [
            "option",
            "redispatch" | "httplog" | "forwardfor" | "httpchk" | "ssl-hello-chk",
        ] => true,
        ["mode", "http" | "tcp"] | ["disabled"] => true,
        ["balance", "roundrobin" | "leastconn" | "source"] => true,
        ["bind", address] => address.parse::<std::net::SocketAddr>().is_ok(),
        ["bind", address, "ssl", "crt-list", _, tls @ ..] => {
            address.parse::<std::net::SocketAddr>().is_ok() && tls_options_ok(tls)
        }
        ["acl", "allowed_cidrs", "src", networks @ ..] => {
            !networks.is_empty() && networks.iter().all(|n| n.parse::<ipnet::IpNet>().is_ok())
        }
        ["acl", "l7_decided", "var(txn.l7p)", "-m", "found"] => true,
        ["acl", name, "var(txn.l7p)", "-m", "str", id] => {
            name.strip_prefix("l7p_") == Some(*id) && proxy_name(id)
        }
        ["acl", name, fetch, rest @ ..] => {
            let compare = match rest {
                ["-i", "-m", compare, "--", _] | ["-m", compare, "--", _] => *compare,
                _ => return false,
            };
            named(name, "r_")
                && matches!(compare, "str" | "beg" | "end" | "sub" | "reg")
                && (matches!(
                    *fetch,
                    "path" | "var(txn.l7ext)" | "req.hdr(host),lower,regsub(:[0-9]+$,)"
                ) || call(fetch, "req.hdr(")
                    || call(fetch, "req.cook("))
        }
        [
            "tcp-request",
            "connection",
            "reject",
            "unless",
            "allowed_cidrs",
        ] => true,
        [
            "http-request",
            "set-header",
            "X-Forwarded-Port",
            "%[dst_port]",
        ] => true,
        [
            "http-request",
            "set-header",
            "X-Forwarded-Proto",
            "http" | "https",
        ] => true,
        [
            "http-request",
            "set-var(txn.l7ext)",
            "path,regsub(^.*/,),regsub(^.*[.],)",
            "if",
            "{",
            "path",
            "-m",
            "reg",
            "[.][^/]*$",
            "}",
        ] => true,
        [
            "http-request",
            "set-var(txn.l7p)",
            id,
            "if",
            "!l7_decided",
            rules @ ..,
        ] => {
            call(id, "str(")
                && !rules.is_empty()
                && rules
                    .iter()
                    .all(|r| named(r.strip_prefix('!').unwrap_or(r), "r_"))
        }
        ["http-request", "deny", "if", policy] => named(policy, "l7p_"),
        [
            "http-request",
            "redirect",
            "code",
            code,
            "location" | "prefix",
            _,
            "if",
            policy,
        ] => matches!(*code, "301" | "302" | "303" | "307" | "308") && named(policy, "l7p_"),
        ["use_backend", pool, "if", policy] => named(pool, "p_") && named(policy, "l7p_"),
        ["default_backend", pool] => named(pool, "p_"),
        ["stick-table", "type", "ipv6", "size", "10k"] => true,
        ["stick-table", "type", "string", "len", "64", "size", "10k"] => true,
        ["stick", "on", "src"] => true,
        ["stick", "store-response", c] => call(c, "res.cook("),
        ["stick", "match", c] => call(c, "req.cook("),
        ["cookie", "SRV", "insert", "indirect", "nocache"] => true,
        ["http-check", "send", "meth", method, "uri", path, rest @ ..] => {
            method.bytes().all(|b| b.is_ascii_uppercase())
                && path.starts_with('/')
                && match rest {
                    [] | ["ver", "HTTP/1.1"] => true,
                    ["hdr", "Host", host] | ["ver", "HTTP/1.1", "hdr", "Host", host] => host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
                    _ => false,
                }
        }
        ["http-check", "expect", "rstatus", codes] => codes
            .strip_prefix("^(")
            .and_then(|c| c.strip_suffix(")$"))
            .is_some_and(|c| c.split('|').all(number)),
        ["server", name, address, "weight", weight, options @ ..] => {
            named(name, "m_")
                && address.parse::<std::net::SocketAddr>().is_ok()
                && number(weight)
                && server_options_ok(options)
        }
        _ => false,
    }
}

/// The words of one TLS option (`alpn`, `ssl-min-ver`, `ssl-max-ver`, `ciphers`, `ciphersuites`)
/// at the start of `rest`, if it is one with only known names in it.
fn tls_option(rest: &[&str]) -> Option<usize> {
    use lbaas::tls_options as opts;
    let known_ciphers = |list: &str, tls13: bool| {
        list.split(':')
            .all(|c| opts::CIPHERS.contains(&c) && opts::is_tls13_suite(c) == tls13)
    };
    match rest {
        ["alpn", list, ..] => list
            .split(',')
            .all(|p| opts::ALPN_PROTOCOLS.contains(&p))
            .then_some(2),
        ["ssl-min-ver" | "ssl-max-ver", v, ..] => {
            matches!(*v, "SSLv3" | "TLSv1.0" | "TLSv1.1" | "TLSv1.2" | "TLSv1.3").then_some(2)
        }
        ["ciphers", list, ..] => known_ciphers(list, false).then_some(2),
        ["ciphersuites", list, ..] => known_ciphers(list, true).then_some(2),
        _ => None,
    }
}

/// A bind's TLS options after its crt-list.
fn tls_options_ok(options: &[&str]) -> bool {
    let mut i = 0;
    while i < options.len() {
        match tls_option(&options[i..]) {
            Some(n) => i += n,
            None => return false,
        }
    }
    true
}

/// What follows `weight N` on a server line.
fn server_options_ok(options: &[&str]) -> bool {
    let mut i = 0;
    while i < options.len() {
        let rest = &options[i..];
        if let Some(n) = tls_option(rest) {
            i += n;
            continue;
        }
        i += match rest {
            ["proto", "h2", ..] => 2,
            ["ssl" | "check-ssl", "verify", "none", ..] => 3,
            ["check", "inter", d, "fall", f, "rise", r, ..]
                if duration(d) && number(f) && number(r) =>
            {
                7
            }
            ["cookie", id, ..] if proxy_name(id) => 2,
            ["backup" | "disabled" | "send-proxy" | "send-proxy-v2", ..] => 1,
            _ => return false,
        };
    }
    true
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
            if !directive_ok(&w.words) {
                fail(
                    n,
                    line,
                    "not a directive the renderer writes (if it gained one, teach \
                     directive_ok in fuzz/src/haproxy.rs)",
                );
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

#[cfg(test)]
mod oracle {
    //! The checks catch what they are meant to: each tampered rendering of a seed must fail them.
    use super::*;

    fn seed() -> (Device, Rendered) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/render_haproxy");
        let mut best: Option<(Device, Rendered)> = None;
        for entry in std::fs::read_dir(dir).expect("the seeds") {
            let data = std::fs::read(entry.expect("an entry").path()).expect("a seed");
            let device = Device::decode(&data[..]).expect("a device");
            let renderer = ConfigRenderer {
                stats_socket: Path::new(STATS_SOCKET),
            };
            let rendered = renderer
                .render_device(&device.load_balancers, Path::new(CERT_DIR))
                .expect("seeds render");
            // The one with certificates and L7 policies.
            if best
                .as_ref()
                .is_none_or(|(_, r)| rendered.text.len() > r.text.len())
            {
                best = Some((device, rendered));
            }
        }
        best.expect("at least one seed")
    }

    fn tampered(edit: impl Fn(&mut Rendered)) -> bool {
        let (device, mut rendered) = seed();
        check(&device, &rendered);
        edit(&mut rendered);
        std::panic::catch_unwind(|| check(&device, &rendered)).is_err()
    }

    fn replace_once(text: &mut String, from: &str, to: &str) {
        assert!(text.contains(from), "{from:?} is not in the seed's config");
        *text = text.replacen(from, to, 1);
    }

    #[test]
    fn injected_lines_are_caught() {
        let cases: [(&str, &str); 9] = [
            (
                "    balance roundrobin\n",
                "    balance roundrobin\n    server evil 192.0.2.66:80 weight 1\n",
            ),
            (
                "    mode http\n",
                "    mode http\n    http-request return status 200\n",
            ),
            ("    mode http\n", "    mode http\nlisten evil\n"),
            (
                " -m beg -- /admin",
                " -m beg -- /admin\n    use_backend p_x",
            ),
            (" -m beg -- /admin", " -m beg -- /admin#"),
            (" -m beg -- /admin", " -m beg -- /ad\\ min"),
            (" -m beg -- /admin", " -m beg -- \"/admin\""),
            ("moved%%20here", "moved%[env(SECRET)]"),
            ("default_backend p_", "default_backend p_x"),
        ];
        for (from, to) in cases {
            assert!(
                tampered(|r| replace_once(&mut r.text, from, to)),
                "not caught: {to:?}"
            );
        }
        assert!(tampered(|r| r.text.push('\r')));
        assert!(tampered(|r| {
            r.cert_files.insert("../escape.pem".into(), String::new());
        }));
        assert!(tampered(|r| {
            let (name, content) = r
                .cert_files
                .iter()
                .find(|(n, _)| n.ends_with(".pem"))
                .expect("a pem");
            let (name, content) = (name.clone(), format!("{content}bind :80\n"));
            r.cert_files.insert(name, content);
        }));
    }
}
