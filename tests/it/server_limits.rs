//! The local server's connection limits, on raw sockets: the connection cap answers a JSON 503, idle and
//! slow-header connections are closed after the header timeout, a body that does not arrive in time is a
//! JSON 408, and an oversized request target or header section is a JSON 414 or 431 (not hyper's empty
//! answer).

use std::time::Duration;

use integration_tests::{TestDb, clickhouse_url, local_server, stop_local_server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server_with(
    hint: &str,
    overrides: &[(&str, &str)],
) -> (TestDb, analytics_cli::server::LocalServer) {
    let db = TestDb::on(&clickhouse_url(), hint, overrides).await;
    let srv = local_server(&db).await;
    (db, srv)
}

/// Reads until the server closes the connection (at most 5 s); returns the status and the JSON body.
async fn read_answer(stream: &mut TcpStream) -> (u16, Value) {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes within 5 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let json =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body {body:?} is not JSON: {e}"));
    (status, json)
}

/// Whether the server closed `stream` within `within` (a read returns end of file or a reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_connection_over_the_cap_gets_a_json_503_and_a_freed_slot_serves_again() {
    let (db, srv) = server_with("conn_cap", &[("ANALYTICS_SERVER_MAX_CONNECTIONS", "4")]).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(srv.addr).await.expect("connect"));
    }
    // Let the server accept all four.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fifth = TcpStream::connect(srv.addr).await.expect("connect");
    fifth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (status, body) = read_answer(&mut fifth).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("4 connections")),
        "{body}"
    );

    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = reqwest::get(format!("http://{}/health", srv.addr))
        .await
        .expect("request");
    assert_eq!(health.status(), 200, "a freed slot serves again");
    drop(idle);
    stop_local_server(&db, srv).await;
    db.drop_database().await;
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_after_the_header_timeout() {
    let (db, srv) = server_with(
        "header_timeout",
        &[("ANALYTICS_SERVER_HEADER_TIMEOUT_SECONDS", "1")],
    )
    .await;

    // Connected, sends nothing.
    let mut silent = TcpStream::connect(srv.addr).await.expect("connect");
    assert!(
        closed_within(&mut silent, Duration::from_secs(4)).await,
        "a silent connection is closed"
    );

    // Sends its headers a byte every 200 ms (slowloris).
    let mut slow = TcpStream::connect(srv.addr).await.expect("connect");
    let trickle = async {
        for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), trickle)
        .await
        .expect("the trickle ends");
    assert!(
        closed_within(&mut slow, Duration::from_secs(1)).await,
        "a slow header is cut off"
    );

    // A keep-alive connection is served, then closed once idle.
    let mut kept = TcpStream::connect(srv.addr).await.expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut kept, Duration::from_secs(4)).await,
        "an idle keep-alive connection is closed"
    );

    stop_local_server(&db, srv).await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_json_408() {
    let (db, srv) = server_with(
        "body_timeout",
        &[("ANALYTICS_SERVER_BODY_TIMEOUT_SECONDS", "1")],
    )
    .await;
    let mut stream = TcpStream::connect(srv.addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST /analytics/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"events\": [",
                integration_tests::WRITE_KEY
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let (status, body) = read_answer(&mut stream).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout");
    assert_eq!(body["error"]["field"], "body");
    stop_local_server(&db, srv).await;
    db.drop_database().await;
}

#[tokio::test]
async fn an_oversized_target_or_header_section_is_a_json_414_or_431() {
    let (db, srv) = server_with("oversized", &[]).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", srv.addr);
    let long = format!(
        "{base}/analytics/metrics?metric=revenue&x={}",
        "a".repeat(20_000)
    );
    let many = (0..150).fold(client.get(format!("{base}/health")), |req, i| {
        req.header(format!("x-h{i}"), "v")
    });
    let large = client
        .get(format!("{base}/health"))
        .header("x-large", "b".repeat(40_000));
    let cases = [
        (
            "a 20 KB target",
            client.get(long),
            414,
            "uri_too_long",
            "uri",
        ),
        ("150 headers", many, 431, "headers_too_large", "headers"),
        ("a 40 KB header", large, 431, "headers_too_large", "headers"),
    ];
    for (what, req, status, code, field) in cases {
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert_eq!(body["error"]["code"], code, "{what}");
        assert_eq!(body["error"]["field"], field, "{what}");
    }
    stop_local_server(&db, srv).await;
    db.drop_database().await;
}
