//! Access logs of the native data plane: one RFC 5424 syslog line per HTTP request or TCP
//! connection, in the operator's HAProxy log-format line, sent over UDP (a datagram each) or TCP
//! (RFC 6587 octet counting). Sending never waits: a line the target cannot take now is dropped.
use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use lbaas::{
    agent::v1::AccessLog,
    logformat::{self, Token},
};
use tokio::{io::AsyncWriteExt as _, sync::mpsc};

use lbaas::server::AbortOnDrop;

/// Lines waiting for a TCP target; more are dropped.
const QUEUE: usize = 4096;
/// Wait before connecting again to a TCP target that failed.
const RECONNECT: Duration = Duration::from_millis(500);
/// local0.info, as HAProxy's `log ... local0 info`.
const PRIORITY: u8 = 134;

/// What one request or connection did, for its log line.
#[derive(Debug, Default)]
pub struct Entry {
    /// The listener's id (HAProxy's frontend is `l_<id>`).
    pub listener: Arc<str>,
    pub client: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub accepted: Option<SystemTime>,
    pub started: Option<Instant>,
    /// HTTP: `METHOD TARGET VERSION`.
    pub request: Option<String>,
    pub status: Option<u16>,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// Bytes received from the client.
    pub bytes_in: u64,
    pub pool: Option<String>,
    pub member: Option<String>,
    /// Time to the response head (HTTP), in ms.
    pub response_ms: Option<u128>,
    /// HAProxy's termination state with cookie flags (`----` for a normal end).
    pub termination: &'static str,
    /// Whether TLS ended here (the SSL samples have a value).
    pub tls: bool,
    /// An HTTP request (not a TCP connection): HTTP-only variables have a value, and `%tsc`
    /// has its four characters (`%ts`'s two for TCP, as HAProxy's TCP frontends write it).
    pub http: bool,
}

impl Entry {
    fn value(&self, name: &str) -> Option<String> {
        if !self.http {
            if name == "tsc" {
                return self.value("ts");
            }
            if logformat::HTTP_ONLY.contains(&name) {
                return None;
            }
        }
        let addr_ip = |a: Option<SocketAddr>| a.map(|a| a.ip().to_canonical().to_string());
        let addr_port = |a: Option<SocketAddr>| a.map(|a| a.port().to_string());
        match name {
            "f" | "ft" => Some(format!("l_{}", self.listener)),
            "ci" => addr_ip(self.client),
            "cp" => addr_port(self.client),
            "fi" => addr_ip(self.local),
            "fp" => addr_port(self.local),
            "t" => self.accepted.map(haproxy_date),
            "r" => self.request.clone(),
            "ST" => self.status.map(|s| s.to_string()),
            "B" => Some(self.bytes_out.to_string()),
            "U" => Some(self.bytes_in.to_string()),
            "b" => self.pool.as_ref().map(|p| format!("p_{p}")),
            "s" => self.member.as_ref().map(|m| format!("m_{m}")),
            "Tt" | "Ta" => self.started.map(|s| s.elapsed().as_millis().to_string()),
            "Tr" => self.response_ms.map(|ms| ms.to_string()),
            "tsc" => Some(self.termination.to_owned()),
            "ts" => Some(self.termination.get(..2).unwrap_or("--").to_owned()),
            // No client certificates are asked for: verification has nothing to fail.
            "[ssl_c_verify]" if self.tls => Some("0".to_owned()),
            "[ssl_c_s_dn]" if self.tls => Some(String::new()),
            _ => None,
        }
    }
}

/// HAProxy's `%t`: `05/Dec/2026:19:20:01.123`.
fn haproxy_date(at: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, ms) = civil(at);
    let month = MONTHS.get(mo.saturating_sub(1) as usize).unwrap_or(&"Jan");
    format!("{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02}.{ms:03}")
}

/// RFC 5424's timestamp: `2026-12-05T19:20:01.123Z`.
fn rfc5424_date(at: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(at);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// UTC calendar fields of a time: (year, month, day, hour, minute, second, millisecond).
fn civil(at: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let n = |v: i64| u32::try_from(v).unwrap_or(0);
    (
        year,
        n(month),
        n(day),
        n(rest / 3600),
        n(rest % 3600 / 60),
        n(rest % 60),
        since.subsec_millis(),
    )
}

enum Sink {
    Udp(std::net::UdpSocket),
    Tcp {
        queue: mpsc::Sender<Vec<u8>>,
        _sender: AbortOnDrop,
    },
}

/// A load balancer's access log: its format and where its lines go.
pub struct Logger {
    pub config: AccessLog,
    tokens: Vec<Token>,
    sink: Sink,
    host: String,
    pid: u32,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Logger {
    /// Checks the target and starts sending to it (in the background, for TCP).
    pub fn start(config: &AccessLog) -> Result<Self, String> {
        let ip: std::net::IpAddr = config.address.parse().map_err(|_| {
            format!(
                "access_log.address {:?} is not an IP address",
                config.address
            )
        })?;
        let port = u16::try_from(config.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("access_log.port {} is not 1-65535", config.port))?;
        let target = SocketAddr::new(ip, port);
        if config.format.chars().any(char::is_control) {
            return Err("access_log.format has control characters".into());
        }
        let sink = match config.transport.as_str() {
            "udp" => {
                let bind: SocketAddr = if ip.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = std::net::UdpSocket::bind(bind)
                    .map_err(|e| format!("access log socket: {e}"))?;
                socket
                    .set_nonblocking(true)
                    .map_err(|e| format!("access log socket: {e}"))?;
                socket
                    .connect(target)
                    .map_err(|e| format!("access log target {target}: {e}"))?;
                Sink::Udp(socket)
            }
            "tcp" => {
                let (tx, rx) = mpsc::channel(QUEUE);
                Sink::Tcp {
                    queue: tx,
                    _sender: AbortOnDrop(tokio::spawn(send_tcp(target, rx))),
                }
            }
            other => {
                return Err(format!(
                    "access_log.transport {other:?} is not \"udp\" or \"tcp\""
                ));
            }
        };
        Ok(Self {
            config: config.clone(),
            tokens: logformat::parse(&config.format),
            sink,
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
                .unwrap_or_else(|| "-".to_owned()),
            pid: std::process::id(),
        })
    }

    /// The message part of the line for `entry`.
    fn message(&self, entry: &Entry) -> String {
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Text(text) => out.push_str(text),
                // As the HAProxy driver writes a TCP frontend's line (`logformat::for_tcp`).
                Token::Var { name, quoted, .. }
                    if !entry.http
                        && name != "tsc"
                        && logformat::HTTP_ONLY.contains(&name.as_str()) =>
                {
                    out.push_str(if *quoted { "\"-\"" } else { "-" });
                }
                Token::Var { name, quoted, .. } => match (entry.value(name), quoted) {
                    (Some(v), true) => {
                        let _ = write!(out, "\"{}\"", v.replace('"', "\\\""));
                    }
                    (Some(v), false) if v.is_empty() => out.push('-'),
                    (Some(v), false) => out.push_str(&v),
                    // HAProxy writes an empty quoted sample as "".
                    (None, true) => out.push_str("\"\""),
                    (None, false) => out.push('-'),
                },
            }
        }
        out
    }

    /// Sends the line for `entry`, or drops it if the target cannot take it now.
    pub fn log(&self, entry: &Entry) {
        let line = format!(
            "<{PRIORITY}>1 {} {} lbaas-dataplane {} - - {}",
            rfc5424_date(SystemTime::now()),
            self.host,
            self.pid,
            self.message(entry)
        );
        match &self.sink {
            Sink::Udp(socket) => {
                let _ = socket.send(line.as_bytes());
            }
            Sink::Tcp { queue, .. } => {
                let _ = queue.try_send(format!("{} {line}", line.len()).into_bytes());
            }
        }
    }
}

/// Writes queued lines to a TCP target, connecting again after a failure; lines queued while it
/// is unreachable wait (up to the queue's size) or are dropped.
async fn send_tcp(target: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>) {
    loop {
        let mut stream = match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(target),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => {
                tokio::time::sleep(RECONNECT).await;
                // Lines that came meanwhile are lost, as with HAProxy's ring when it is full.
                while rx.try_recv().is_ok() {}
                continue;
            }
        };
        loop {
            let Some(line) = rx.recv().await else {
                return;
            };
            if stream.write_all(&line).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn octavias_format_reads_as_haproxy_would_write_it() {
        let format = "p1 lb1 %f %ci %cp %t %{+Q}r %ST %B %U %[ssl_c_verify] %{+Q}[ssl_c_s_dn] %b %s %Tt %tsc 100%%";
        let logger = Logger {
            config: AccessLog::default(),
            tokens: logformat::parse(format),
            sink: Sink::Udp(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()),
            host: "h".into(),
            pid: 1,
        };
        let entry = Entry {
            listener: "l1".into(),
            client: Some("127.0.0.1:40000".parse().unwrap()),
            accepted: Some(UNIX_EPOCH + Duration::from_millis(1_764_962_401_123)),
            request: Some("GET /a HTTP/1.1".into()),
            status: Some(200),
            bytes_out: 12,
            bytes_in: 0,
            pool: Some("pool1".into()),
            member: Some("m1".into()),
            termination: "----",
            http: true,
            ..Default::default()
        };
        let line = logger.message(&entry);
        let (head, tail) = line.split_at(line.find(" p_pool1").unwrap());
        assert_eq!(
            head,
            "p1 lb1 l_l1 127.0.0.1 40000 05/Dec/2025:19:20:01.123 \"GET /a HTTP/1.1\" 200 12 0 - \"\""
        );
        assert!(tail.starts_with(" p_pool1 m_m1 - ----"), "{tail}");
        assert!(line.ends_with(" 100%"), "{line}");
        assert_eq!(
            rfc5424_date(UNIX_EPOCH + Duration::from_millis(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
