//! HAProxy's runtime API (the stats socket): one command per connection, and the parsing of
//! `show stat` into member health and listener counters.
use std::{path::Path, time::Duration};

use lbaas::agent::v1::{ListenerStats, MemberHealth, MemberHealthStatus};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends one command and returns the whole answer.
pub async fn command(socket: &Path, command: &str) -> std::io::Result<String> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        stream.shutdown().await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    };
    tokio::time::timeout(COMMAND_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the runtime API did not answer",
            )
        })?
}

/// Reads each listener's counters out of `show stat` CSV: frontends are `l_<listener>`.
pub fn listener_stats(csv: &str) -> Vec<ListenerStats> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv)) = (index("pxname"), index("svname")) else {
        return Vec::new();
    };
    let [bin, bout, scur, stot, ereq] = ["bin", "bout", "scur", "stot", "ereq"].map(index);
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let listener_id = fields.get(px)?.strip_prefix("l_")?;
            if *fields.get(sv)? != "FRONTEND" {
                return None;
            }
            let number = |column: Option<usize>| -> u64 {
                column
                    .and_then(|c| fields.get(c))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            Some(ListenerStats {
                listener_id: listener_id.to_owned(),
                bytes_in: number(bin),
                bytes_out: number(bout),
                active_connections: number(scur),
                total_connections: number(stot),
                request_errors: number(ereq),
            })
        })
        .collect()
}

/// Reads member health out of `show stat` CSV: backends are `p_<pool>`, servers `m_<member>`.
pub fn member_health(csv: &str) -> Vec<MemberHealthStatus> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (index("pxname"), index("svname"), index("status")) else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let pool_id = fields.get(px)?.strip_prefix("p_")?;
            let member_id = fields.get(sv)?.strip_prefix("m_")?;
            let status = fields.get(st)?;
            // "UP 1/3" is still up (going down), "DOWN 1/2" still down (coming up).
            let health = if status.starts_with("UP") {
                MemberHealth::Up
            } else if status.starts_with("DOWN") {
                MemberHealth::Down
            } else if status.starts_with("DRAIN") || status.starts_with("NOLB") {
                MemberHealth::Drain
            } else if status.starts_with("MAINT") {
                MemberHealth::Maint
            } else if status.starts_with("no check") {
                MemberHealth::NoCheck
            } else {
                return None;
            };
            Some(MemberHealthStatus {
                pool_id: pool_id.to_owned(),
                member_id: member_id.to_owned(),
                health: health as i32,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_stat() {
        let csv = "# pxname,svname,qcur,status,weight\n\
                   l_x,FRONTEND,0,OPEN,\n\
                   p_pool1,m_a,0,UP,1\n\
                   p_pool1,m_b,0,DOWN 1/2,1\n\
                   p_pool1,m_c,0,no check,1\n\
                   p_pool1,m_d,0,MAINT,1\n\
                   p_pool1,BACKEND,0,UP,2\n";
        let health: Vec<(String, MemberHealth)> = member_health(csv)
            .into_iter()
            .map(|m| (m.member_id.clone(), m.health()))
            .collect();
        assert_eq!(
            health,
            vec![
                ("a".to_string(), MemberHealth::Up),
                ("b".to_string(), MemberHealth::Down),
                ("c".to_string(), MemberHealth::NoCheck),
                ("d".to_string(), MemberHealth::Maint),
            ]
        );
    }

    #[test]
    fn parses_listener_counters() {
        let csv = "# pxname,svname,scur,stot,bin,bout,ereq,status\n\
                   l_x,FRONTEND,2,40,1000,5000,3,OPEN\n\
                   p_pool1,m_a,1,20,500,2500,,UP\n\
                   stats,FRONTEND,0,1,0,0,0,OPEN\n";
        let stats = listener_stats(csv);
        assert_eq!(stats.len(), 1);
        assert_eq!(
            stats[0],
            ListenerStats {
                listener_id: "x".into(),
                bytes_in: 1000,
                bytes_out: 5000,
                active_connections: 2,
                total_connections: 40,
                request_errors: 3,
            }
        );
    }
}
