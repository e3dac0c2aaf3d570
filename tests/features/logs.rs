//! Access logs: a load balancer's HTTP and TCP access lines reach a syslog target over UDP and
//! over TCP, RFC 5424 framed, in Octavia's tenant format; a dead target loses lines, never
//! requests; a bad or reserved target is refused with the field.
use super::*;

/// A syslog receiver on 127.0.0.1: the lines it got, in order.
struct Syslog {
    addr: SocketAddr,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    _task: tokio::task::JoinHandle<()>,
}

impl Syslog {
    /// One datagram per line.
    async fn udp() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf).await {
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned());
            }
        });
        Self {
            addr,
            lines,
            _task: task,
        }
    }

    /// RFC 6587: octet-counted frames (`LEN SP MSG`), or lines ending in a newline.
    async fn tcp() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut seen: Vec<u8> = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    loop {
                        while let Some((line, used)) = frame(&seen) {
                            let _ = tx.send(line);
                            seen.drain(..used);
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        Self {
            addr,
            lines,
            _task: task,
        }
    }

    /// The first line (from now on) that contains every one of `needles`.
    async fn line_with(&mut self, needles: &[&str]) -> String {
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                let line = self.lines.recv().await.expect("the receiver stopped");
                if needles.iter().all(|n| line.contains(n)) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no log line with {needles:?} at {}", self.addr))
    }
}

/// One complete frame at the start of `seen`: the line and the bytes it took.
fn frame(seen: &[u8]) -> Option<(String, usize)> {
    let digits = seen.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && seen.get(digits) == Some(&b' ') {
        let len: usize = std::str::from_utf8(&seen[..digits]).ok()?.parse().ok()?;
        let end = digits + 1 + len;
        if seen.len() < end {
            return None;
        }
        let line = String::from_utf8_lossy(&seen[digits + 1..end]);
        return Some((line.trim_end().to_owned(), end));
    }
    let end = seen.iter().position(|b| *b == b'\n')?;
    Some((
        String::from_utf8_lossy(&seen[..end]).trim_end().to_owned(),
        end + 1,
    ))
}

/// Points the load balancer's access log somewhere else and waits for it to apply.
async fn log_to(api: &mut Api, project: &str, id: &str, target: &str) {
    api.update_load_balancer(in_project(
        project,
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: id.to_owned(),
                access_log_target: target.to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["access_log_target".into()],
            }),
        },
    ))
    .await
    .unwrap();
    let settled = wait_settled(api, project, id).await;
    assert_eq!(
        settled.provisioning_status(),
        pb::ProvisioningStatus::Active,
        "{}",
        settled.status_reason
    );
    assert_eq!(settled.access_log_target, target);
}

async fn access_logs(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let backend = Backend::start("logged").await;
    let member = || vec![member_at(backend.port())];
    let (mut udp, mut tcp) = (Syslog::udp().await, Syslog::tcp().await);

    // Refused with the field, nothing stored.
    for target in [
        "syslog://127.0.0.1:514",
        "udp://127.0.0.1",
        "udp://127.0.0.1:0",
        "tcp://logs.example.com:514",
        "udp://0.0.0.0:514",
        "udp://169.254.169.254:514",
    ] {
        let err = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(pb::LoadBalancer {
                        name: "refused".into(),
                        access_log_target: target.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{target}");
        assert_eq!(
            support::violations(&err),
            vec!["load_balancer.access_log_target".to_owned()],
            "{target}"
        );
    }

    let mut spec = lb(
        "logged",
        vec![
            http(
                8080,
                pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, member()),
            ),
            listener(
                pb::Protocol::Tcp,
                8081,
                pool(pb::Protocol::Tcp, pb::LbAlgorithm::RoundRobin, member()),
            ),
        ],
    );
    spec.access_log_target = format!("udp://{}", udp.addr);
    let created = support::create_active(&mut api, &project, spec).await;
    assert_eq!(created.access_log_target, format!("udp://{}", udp.addr));
    let vip = created.vip_address.clone();

    // HTTP over UDP: Octavia's tenant format, after an RFC 5424 header.
    let reply = get(&format!("{vip}:8080"), "/logged-path?q=1", &[]).await;
    assert_eq!(reply.status, 200);
    let line = udp.line_with(&["\"GET /logged-path?q=1 HTTP/1.1\""]).await;
    assert!(line.starts_with("<134>1 "), "{line}");
    let message = line
        .split_once(&format!(" {project} "))
        .unwrap_or_else(|| panic!("no project id in {line}"))
        .1;
    let fields: Vec<&str> = message.split(' ').collect();
    // lb_id %f %ci %cp %t "METHOD TARGET VERSION" %ST %B %U ...
    assert_eq!(fields[0], created.id, "{line}");
    assert!(fields[1].starts_with("l_"), "{line}");
    assert_eq!(fields[2], "127.0.0.1", "{line}");
    assert!(fields[3].parse::<u16>().is_ok(), "{line}");
    assert_eq!(fields[8], "200", "{line}");
    assert!(fields[9].parse::<u64>().is_ok_and(|b| b > 0), "{line}");
    assert!(message.contains(" p_") && message.contains(" m_"), "{line}");
    assert!(message.ends_with(" ----"), "{line}");

    // A TCP connection: one line, with no request and the TCP termination state.
    let tcp_reply = get(&format!("{vip}:8081"), "/through-tcp", &[]).await;
    assert_eq!(tcp_reply.status, 200);
    let line = udp.line_with(&[&created.id, "\"-\"", " p_", " m_"]).await;
    assert!(line.ends_with(" --"), "{line}");

    // The same over TCP.
    log_to(
        &mut api,
        &project,
        &created.id,
        &format!("tcp://{}", tcp.addr),
    )
    .await;
    let reply = get(&format!("{vip}:8080"), "/over-tcp", &[]).await;
    assert_eq!(reply.status, 200);
    let line = tcp.line_with(&["\"GET /over-tcp HTTP/1.1\""]).await;
    assert!(line.starts_with("<134>1 "), "{line}");
    assert!(
        line.contains(&format!(" {project} {} ", created.id)),
        "{line}"
    );

    // A dead target (nothing listens there) loses lines, not requests.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    log_to(&mut api, &project, &created.id, &format!("tcp://{dead}")).await;
    let served = counts(&format!("{vip}:8080"), 50, &[]).await;
    assert_eq!(served.get("logged"), Some(&50), "{served:?}");
    let through_tcp = counts(&format!("{vip}:8081"), 20, &[]).await;
    assert_eq!(through_tcp.get("logged"), Some(&20), "{through_tcp:?}");

    // Cleared: no more lines.
    log_to(&mut api, &project, &created.id, "").await;
    stack.stop().await;
}

on_each_driver!(access_logs);
