//! `valuedrift serve` under hostile and broken requests, on loopback with SmolLM2: oversized,
//! slow and silent bodies, malformed JSON, impossible numbers and token ids, many requests at
//! once. Every one is answered with a 4xx that names the problem (or a 200), and the server
//! keeps serving the requests that are fine.

mod common;

use common::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The status code and body of a raw HTTP exchange: `head` (request line and headers, without
/// the blank line), then `body`, sent in `pieces` with `pause` between them.
fn exchange(port: u16, head: &str, body: &[u8], pieces: usize, pause: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let size = body.len().div_ceil(pieces.max(1)).max(1);
    for (i, piece) in body.chunks(size).enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        // The server may answer and close before the whole body is sent.
        if s.write_all(piece).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn post(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    exchange(
        port,
        &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}", body.len()),
        body,
        1,
        Duration::ZERO,
    )
}

fn completion(port: u16, body: serde_json::Value) -> (u16, String) {
    post(port, "/v1/completions", body.to_string().as_bytes())
}

fn assert_status(got: (u16, String), want: u16, mentions: &str) {
    assert_eq!(got.0, want, "{}", got.1);
    assert!(got.1.contains(mentions), "the answer should mention {mentions:?}: {}", got.1);
}

#[test]
fn hostile_requests_get_4xx_and_the_server_keeps_serving() {
    let port = free_port();
    let _server = common::serve(port, &["--max-connections", "32", "--read-timeout-s", "2", "--max-body-mib", "1"]);
    let fine = || completion(port, serde_json::json!({"prompt": "The capital of France is", "max_tokens": 2, "temperature": 0}));
    assert_status(fine(), 200, "\"text\"");

    // Silent clients: headers announcing a body that never comes.
    let silent: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"prompt\":").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    assert_status(fine(), 200, "\"text\"");
    eprintln!("answered beside 4 silent clients in {:.1} s", started.elapsed().as_secs_f64());
    assert!(started.elapsed() < Duration::from_secs(30), "the silent clients held the server");
    // Once the read timeout passes, each silent client is told why and disconnected.
    for mut s in silent {
        let mut answer = String::new();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    // A body trickling in slower than the read timeout: 408.
    let trickle = vec![b' '; 200_000];
    let head = format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}", trickle.len());
    assert_status(exchange(port, &head, &trickle, 40, Duration::from_millis(150)), 408, "longer than");

    // Too large, announced (answered before the body is read) or chunked (cut at the limit): 413.
    let announced = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000";
    assert_status(exchange(port, announced, b"", 1, Duration::ZERO), 413, "at most 1048576");
    let huge = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000";
    assert_status(exchange(port, huge, b"", 1, Duration::ZERO), 413, "at most 1048576");
    let big = format!("{{\"prompt\": \"{}\"}}", "a".repeat(2 << 20));
    let chunked: Vec<u8> = big
        .as_bytes()
        .chunks(64 << 10)
        .flat_map(|c| [format!("{:x}\r\n", c.len()).into_bytes(), c.to_vec(), b"\r\n".to_vec()].concat())
        .chain(*b"0\r\n\r\n")
        .collect();
    let head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked";
    assert_status(exchange(port, head, &chunked, 1, Duration::ZERO), 413, "at most 1048576");

    // Broken bodies and impossible values: 400 naming the problem.
    assert_status(post(port, "/v1/completions", b"{\"prompt\": "), 400, "not JSON");
    assert_status(post(port, "/v1/completions", b"\xff\xfe{}"), 400, "UTF-8");
    assert_status(post(port, "/v1/completions", b"[1, 2]"), 400, "JSON object");
    assert_status(completion(port, serde_json::json!({"prompt": [1, 4294967297u64]})), 400, "4294967297");
    assert_status(completion(port, serde_json::json!({"prompt": [49152]})), 400, "outside the vocabulary");
    assert_status(completion(port, serde_json::json!({"prompt": "a", "max_tokens": u64::MAX})), 400, "context");
    assert_status(completion(port, serde_json::json!({"prompt": "a", "n": 100000})), 400, "'n'");
    assert_status(completion(port, serde_json::json!({"prompt": vec!["a"; 64], "n": 100})), 400, "split it");
    assert_status(completion(port, serde_json::json!({"prompt": "a", "temperature": -1})), 400, "temperature");
    assert_status(completion(port, serde_json::json!({"prompt": "a", "logprobs": 1000})), 400, "log-prob");
    assert_status(completion(port, serde_json::json!({"prompt": ""})), 400, "empty");
    assert_status(post(port, "/v1/chat/completions", br#"{"messages": []}"#), 400, "messages");
    assert_status(post(port, "/v1/embeddings", br#"{"input": "a"}"#), 404, "embedder");
    assert_status(exchange(port, "GET /v1/nothing HTTP/1.1\r\nHost: x", b"", 1, Duration::ZERO), 404, "no route");
    // Unicode, control characters and right-to-left marks are text like any other.
    assert_status(completion(port, serde_json::json!({"prompt": "naïve ✓ 日本語 🙂 \u{202e} \u{0}", "max_tokens": 1})), 200, "\"text\"");

    // A long echo is scored a few hundred rows at a time, not as one (tokens × vocabulary) block.
    let long: Vec<u32> = (0..2000).map(|i| 100 + i % 5000).collect();
    let (status, body) = completion(port, serde_json::json!({"prompt": long, "max_tokens": 0, "echo": true, "logprobs": 1}));
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["choices"][0]["logprobs"]["token_logprobs"].as_array().map(Vec::len), Some(2000));

    // Many clients at once, while the silent ones still hang on: every one answered.
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16).map(|_| s.spawn(|| fine().0)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, vec![200; 16]);

    // Past --max-connections, a connection is answered 503 at once; closing some lets others in.
    // The server takes the idle connections in as fast as it gets the CPU, so the probes wait for
    // the state to be reached (a loaded CI machine can take longer than any fixed pause).
    let health = || exchange(port, "GET /health HTTP/1.1\r\nHost: x", b"", 1, Duration::ZERO);
    let idle: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    assert_status(first_with_status(health, 503), 503, "connections are open");
    drop(idle);
    assert_status(first_with_status(health, 200), 200, "ok");
}

/// Repeats `probe` until it answers `want` or 20 s pass; the last answer.
fn first_with_status(probe: impl Fn() -> (u16, String), want: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = probe();
        if answer.0 == want || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
