//! HAProxy's log-format lines, read once for both data planes: the HAProxy driver renders them
//! (TCP frontends without the HTTP-only variables, which HAProxy refuses there), and the native
//! data plane writes the same variables itself.

/// One piece of a log-format line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Text(String),
    /// A variable (`%ci` gives `ci`) or a sample (`%[ssl_c_verify]`, kept with its brackets),
    /// whether it is quoted (`%{+Q}`), and its text as written.
    Var {
        name: String,
        quoted: bool,
        raw: String,
    },
}

/// The variables HAProxy allows only in HTTP mode.
pub const HTTP_ONLY: &[&str] = &[
    "CC", "CS", "HM", "HP", "HPO", "HQ", "HU", "HV", "Ta", "Ti", "Tq", "TR", "Tr", "r", "tr",
    "trg", "trl", "tsc",
];

/// Splits a log-format line into text and variables (`%%` is a literal `%`).
pub fn parse(format: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            text.push('%');
            continue;
        }
        let mut raw = String::from("%");
        let mut quoted = false;
        if chars.peek() == Some(&'{') {
            chars.next();
            let flags: String = chars.by_ref().take_while(|&c| c != '}').collect();
            quoted = flags.split(',').any(|f| f == "+Q");
            raw.push('{');
            raw.push_str(&flags);
            raw.push('}');
        }
        let mut name = String::new();
        if chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                name.push(c);
                if c == ']' {
                    break;
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if !c.is_ascii_alphanumeric() {
                    break;
                }
                name.push(c);
                chars.next();
            }
        }
        raw.push_str(&name);
        if !text.is_empty() {
            tokens.push(Token::Text(std::mem::take(&mut text)));
        }
        tokens.push(Token::Var { name, quoted, raw });
    }
    if !text.is_empty() {
        tokens.push(Token::Text(text));
    }
    tokens
}

/// The line for a TCP frontend: each HTTP-only variable becomes `-` (`"-"` when quoted), except
/// `%tsc`, which becomes its TCP form `%ts`.
pub fn for_tcp(format: &str) -> String {
    let mut out = String::new();
    for token in parse(format) {
        match token {
            Token::Text(text) => out.push_str(&text.replace('%', "%%")),
            Token::Var { name, .. } if name == "tsc" => out.push_str("%ts"),
            Token::Var { name, quoted, .. } if HTTP_ONLY.contains(&name.as_str()) => {
                out.push_str(if quoted { "\"-\"" } else { "-" });
            }
            Token::Var { raw, .. } => out.push_str(&raw),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_lines_lose_the_http_only_variables() {
        assert_eq!(
            for_tcp("p lb %f %ci %{+Q}r %ST %B %[ssl_c_verify] %{+Q}[ssl_c_s_dn] %Tt %tsc 5%%"),
            "p lb %f %ci \"-\" %ST %B %[ssl_c_verify] %{+Q}[ssl_c_s_dn] %Tt %ts 5%%"
        );
        assert_eq!(
            parse("a%{+Q}r"),
            vec![
                Token::Text("a".into()),
                Token::Var {
                    name: "r".into(),
                    quoted: true,
                    raw: "%{+Q}r".into()
                }
            ]
        );
    }
}
