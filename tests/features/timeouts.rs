//! Listener timeouts: client data, member connect and member data, up to Octavia's 24 days.
use super::*;

/// A member that accepts connections (and reads requests) but never answers.
async fn silent_member() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            }));
        }
    });
    (port, task)
}

/// A member that never completes a TCP handshake: a listener whose accept queue is full (it
/// never accepts), so the kernel drops further SYNs and a connect hangs. Keep what it returns.
async fn unreachable_member() -> (u16, tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            // A connect that hangs: the queue is full.
            Err(_) => break,
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    (addr.port(), listener, fillers)
}

async fn timeouts(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (port, task) = silent_member().await;
    let (unreachable, _queue_full, _fillers) = unreachable_member().await;
    let member = || vec![member_at(i32::from(port))];
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "impatient",
            vec![
                pb::Listener {
                    timeout_client_data_ms: 500,
                    ..listener(
                        pb::Protocol::Tcp,
                        9001,
                        pool(pb::Protocol::Tcp, pb::LbAlgorithm::RoundRobin, member()),
                    )
                },
                pb::Listener {
                    timeout_member_connect_ms: 500,
                    timeout_member_data_ms: 500,
                    ..http(
                        9002,
                        pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, member()),
                    )
                },
                pb::Listener {
                    timeout_member_connect_ms: 300,
                    timeout_member_data_ms: 60_000,
                    ..http(
                        9003,
                        pool(
                            pb::Protocol::Http,
                            pb::LbAlgorithm::RoundRobin,
                            vec![member_at(i32::from(unreachable))],
                        ),
                    )
                },
            ],
        ),
    )
    .await;
    // A silent TCP client is let go after the client timeout (the default would be 50 s).
    let mut idle = connect_from(&format!("{}:9001", created.vip_address), None)
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "{driver}: the idle connection was not closed: {closed:?}"
    );
    // A member that does not answer within the data timeout: 504.
    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        get_from(&format!("{}:9002", created.vip_address), "/", &[], None),
    )
    .await
    .expect("no answer within 15 s")
    .unwrap();
    assert_eq!(reply.status, 504, "{driver}: {reply:?}");
    // A member that never accepts: 503 once the connect timeout (and the retries) ran out; the
    // kernel alone would keep trying for about two minutes, the data timeout is a minute.
    let asked = std::time::Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        get_from(&format!("{}:9003", created.vip_address), "/", &[], None),
    )
    .await
    .expect("no answer within 15 s: the connect timeout was not applied")
    .unwrap();
    assert_eq!(reply.status, 503, "{driver}: {reply:?}");
    eprintln!(
        "{driver}: 503 {} ms after asking a member that never accepts (connect timeout 300 ms)",
        asked.elapsed().as_millis()
    );
    // Octavia's longest timeouts (24 days) are taken and served; a millisecond more is refused.
    let longest = 24 * 24 * 60 * 60 * 1000;
    let answering = Backend::start("patient").await;
    let answers = || vec![member_at(i32::from(answering.addr.port()))];
    let patient = support::create_active(
        &mut api,
        &project,
        lb(
            "patient",
            vec![pb::Listener {
                timeout_client_data_ms: longest,
                timeout_member_connect_ms: longest,
                timeout_member_data_ms: longest,
                ..http(
                    9004,
                    pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, answers()),
                )
            }],
        ),
    )
    .await;
    let reply = get(&format!("{}:9004", patient.vip_address), "/", &[]).await;
    assert_eq!(reply.status, 200, "{driver}: {reply:?}");
    let refused = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(lb(
                    "too-patient",
                    vec![pb::Listener {
                        timeout_member_data_ms: longest + 1,
                        ..http(
                            9005,
                            pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, member()),
                        )
                    }],
                )),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        support::violations(&refused),
        ["load_balancer.listeners[0].timeout_member_data_ms"]
    );
    task.abort();
    stack.stop().await;
}
on_each_driver!(timeouts);
