//! Stick tables carried across a reload. HAProxy hands its tables from the old process to the new
//! one through the local peer ("teaching"), but the Debian 2.6.12 build does not: on every soft
//! reload (master CLI or `-sf`, with or without `-x`), the old process exits within milliseconds of
//! the signal without connecting to its local peer, and the new worker starts with empty tables.
//! Session persistence (SOURCE_IP, APP_COOKIE) and ACTIVE_STANDBY's replicated tables would not
//! survive any configuration change. So the driver reads every table before a reload and writes
//! it into the new worker after, by server name (a server's numeric id may change with the
//! configuration; its name, `m_<member id>`, does not).
use std::collections::HashMap;

/// One remembered entry: the table (the backend's name), the key and the server's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub table: String,
    pub key: String,
    pub server: String,
}

/// The tables of `show table` that hold entries: `# table: p_x, type: ip, size:10240, used:2`.
pub fn used_tables(answer: &str) -> Vec<String> {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("# table: "))
        .filter_map(|rest| {
            let name = rest.split(',').next()?.trim();
            let used: usize = rest
                .split(',')
                .find_map(|f| f.trim().strip_prefix("used:"))?
                .trim()
                .parse()
                .ok()?;
            (used > 0).then(|| name.to_owned())
        })
        .collect()
}

/// Server id -> name (or the reverse) from `show servers state <backend>`.
pub fn server_names(answer: &str) -> HashMap<u32, String> {
    answer
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            Some((fields.get(2)?.parse().ok()?, (*fields.get(3)?).to_owned()))
        })
        .collect()
}

/// The entries of `show table <name>`, each with its server's name: the `server_key` HAProxy
/// stored, or else the name of its `server_id` in `names` (the old worker's servers). Entries with
/// no server, or a key the runtime API could not take back in one word, are left out.
pub fn entries(table: &str, answer: &str, names: &HashMap<u32, String>) -> Vec<Entry> {
    answer
        .lines()
        .filter(|l| l.starts_with("0x"))
        .filter_map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            let key = field("key")?;
            if key.is_empty() || key.contains([';', '\\', '"', '\'']) {
                return None;
            }
            let server = match field("server_key") {
                Some(k) if k != "-" => k.to_owned(),
                _ => names.get(&field("server_id")?.parse().ok()?)?.clone(),
            };
            Some(Entry {
                table: table.to_owned(),
                key: key.to_owned(),
                server,
            })
        })
        .collect()
}

/// The runtime commands that put `saved` into a worker whose servers are `ids` (table -> server
/// name -> id). Entries whose table or server is gone are dropped.
pub fn restore_commands(
    saved: &[Entry],
    ids: &HashMap<String, HashMap<String, u32>>,
) -> Vec<String> {
    saved
        .iter()
        .filter_map(|e| {
            let id = ids.get(&e.table)?.get(&e.server)?;
            Some(format!(
                "set table {} key {} data.server_id {id}",
                e.table, e.key
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tables_entries_and_servers_are_read() {
        let list = "# table: p_a, type: ipv6, size:10240, used:2\n# table: p_b, type: string, size:10240, used:0\n\n";
        assert_eq!(used_tables(list), ["p_a"]);
        let state = "1\n# be_id be_name srv_id srv_name srv_addr\n3 p_a 1 m_one 10.0.0.1 2 0\n3 p_a 2 m_two 10.0.0.2 2 0\n";
        let names = server_names(state);
        assert_eq!(names.get(&2).unwrap(), "m_two");
        let dump = "# table: p_a, type: ipv6, size:10240, used:3\n\
                    0x55: key=::ffff:10.1.1.9 use=0 exp=0 server_id=1 server_key=m_one\n\
                    0x56: key=::ffff:10.1.1.8 use=0 exp=0 server_id=2 server_key=-\n\
                    0x57: key=::ffff:10.1.1.7 use=0 exp=0 server_id=9 server_key=-\n";
        let got = entries("p_a", dump, &names);
        assert_eq!(got.len(), 2, "the entry of an unknown server is left out");
        assert_eq!(got[0].server, "m_one");
        assert_eq!(got[1].server, "m_two");
        // After the reload m_two is id 1 and m_one is gone.
        let ids = HashMap::from([("p_a".to_owned(), HashMap::from([("m_two".to_owned(), 1)]))]);
        assert_eq!(
            restore_commands(&got, &ids),
            ["set table p_a key ::ffff:10.1.1.8 data.server_id 1"]
        );
    }
}
