//! Remote engines on loopback: `valuedrift serve` with SmolLM2 as generator and judge of a
//! trace must give the local trace's answers exactly and its judgments to float rounding; a
//! misbehaving server in front of it (500s, malformed JSON, hangs, a missing option in the
//! top log-probs, 401s) is retried or fails clearly; a server killed mid-trace loses nothing
//! and the resumed trace completes; a server per checkpoint is started and stopped.

mod common;

use common::{free_port, model, Served};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_valuedrift"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn serve(port: u16) -> Served {
    common::serve(port, &[])
}

fn trace_args(out: &Path) -> Vec<String> {
    let m = model().display().to_string();
    [
        "trace",
        &format!("base={m}@0"),
        "--out",
        out.to_str().unwrap(),
        "--categories",
        "immigration,death_penalty",
        "--per-category",
        "2",
        "--samples",
        "2",
        "--max-new-tokens",
        "16",
        "--seed",
        "7",
        "--batch-size",
        "4",
        "--judge",
        &m,
        "--orders",
        "2",
        "--judge-matmul",
        "f32",
        // The judge check (tested in tests/trace.rs) would only slow these remote-engine tests.
        "--judge-check",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn dump(out: &Path) -> Vec<serde_json::Value> {
    let o = bin().args(["dump", "--store", out.join("trace.sqlite").to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_engines(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("engines.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// Same answers; stance probabilities within `tol`.
fn assert_same_trace(reference: &[serde_json::Value], got: &[serde_json::Value], tol: f64) -> f64 {
    let mut worst = 0.0f64;
    for (a, b) in common::paired(reference, got) {
        assert_eq!((&a["question_id"], &a["sample"], &a["response"]), (&b["question_id"], &b["sample"], &b["response"]), "same seed, same answer");
        for k in ["p_support", "p_neutral", "p_oppose"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            worst = worst.max((x - y).abs());
            assert!((x - y).abs() < tol, "{k}: local {x} vs remote {y}");
        }
    }
    worst
}

fn local_reference(dir: &Path) -> Vec<serde_json::Value> {
    let out = dir.join("local");
    let o = bin().args(trace_args(&out)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    dump(&out)
}

#[test]
fn a_trace_through_serve_equals_the_local_trace_and_survives_faults() {
    let dir = common::temp_dir("remote", "serve");
    let reference = local_reference(&dir);
    assert_eq!(reference.len(), 8);
    let port = free_port();
    let server = serve(port);
    let url = format!("http://127.0.0.1:{port}/v1");

    // Generation through the server, judging with exact (echo) option scores: the same answers
    // and the same stances.
    let engines = write_engines(&dir, &format!("[engine.exact]\nurls = [\"{url}\"]\napi = \"completions\"\nlogprobs = \"echo\"\n"));
    let out = dir.join("remote");
    let o = bin()
        .args(trace_args(&out))
        .args(["--engines", engines.to_str().unwrap(), "--generator-engine", &url, "--judge-engine", "exact"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let remote = dump(&out);
    let worst = assert_same_trace(&reference, &remote, 1e-4);
    eprintln!("echo judge: largest local-remote stance difference {worst:.2e}");
    assert!(remote.iter().all(|r| r["floored"] == false));

    // Judging from the top-20 log-probs of the first answer token (the paper's GPT-4o way).
    // SmolLM2 never lists all three options there, so every judgment is a flagged floor; the
    // numbers where the options are listed are checked with a judge that lists them (below).
    let out = dir.join("top");
    let o = bin().args(trace_args(&out)).args(["--judge-engine", &url]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let top = dump(&out);
    assert_eq!(top.len(), reference.len());
    assert!(top.iter().all(|r| r["floored"] == true), "SmolLM2 listed every option: compare those judgments to the local ones");

    // A misbehaving server in front: 500s, malformed JSON and a hang are retried.
    let flaky = Proxy::start(port, Fault::Flaky);
    let engines = write_engines(
        &dir,
        &format!("[engine.flaky]\nurls = [\"http://127.0.0.1:{}/v1\"]\ntimeout_s = 10\nretries = 6\nbackoff_s = 0.05\nconcurrency = 4\n", flaky.port),
    );
    let out = dir.join("flaky");
    let o = bin()
        .args(trace_args(&out))
        .args(["--engines", engines.to_str().unwrap(), "--generator-engine", "flaky", "--judge-engine", "flaky"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_trace(&top, &dump(&out), 1e-4);
    assert!(flaky.faults() >= 3, "the proxy injected {} faults", flaky.faults());

    // The option 'oppose' missing from the top log-probs: floored, renormalized and flagged.
    let hiding = Proxy::start(port, Fault::HideOppose);
    let out = dir.join("floored");
    let hide_url = format!("http://127.0.0.1:{}/v1", hiding.port);
    let o = bin().args(trace_args(&out)).args(["--judge-engine", &hide_url]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let floored = dump(&out);
    assert!(floored.iter().all(|r| r["floored"] == true), "every judgment lacked 'oppose'");
    for r in &floored {
        let sum: f64 = ["p_support", "p_neutral", "p_oppose"].iter().map(|k| r[*k].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-9 && r["p_oppose"].as_f64().unwrap() > 0.0);
    }

    // A 4xx is not retried: the error names the status and the server's words.
    let refusing = Proxy::start(port, Fault::Unauthorized);
    let out = dir.join("refused");
    let o = bin().args(trace_args(&out)).args(["--generator-engine", &format!("http://127.0.0.1:{}/v1", refusing.port)]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("HTTP 401") && stderr(&o).contains("bad key"), "{}", stderr(&o));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Top-20 judging through `valuedrift serve` with a judge that does list the three options
/// (Qwen2.5 1.5B): those judgments equal the local judge's to float rounding, and most
/// judgments have every option listed, so the comparison is never empty.
#[test]
fn top_20_judgments_equal_the_local_judge_where_every_option_is_listed() {
    let dir = common::temp_dir("remote", "top20");
    let judge = model().parent().unwrap().join("qwen2.5-coder-1.5b-instruct.q4_k_m.gguf");
    let args = |out: &Path| -> Vec<String> {
        let mut a = trace_args(out);
        let at = a.iter().position(|x| x == "--judge").unwrap() + 1;
        a[at] = judge.display().to_string();
        // The option words on both sides: a server cannot report the hidden states a head reads.
        a.extend(["--judge-mode".into(), "paper".into()]);
        a
    };
    let out = dir.join("local");
    let o = bin().args(args(&out)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let local = dump(&out);
    let port = free_port();
    let server = common::serve_model(&judge, port, &["--matmul", "f32"]);
    let out = dir.join("top");
    let o = bin().args(args(&out)).args(["--judge-engine", &format!("http://127.0.0.1:{port}/v1")]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let top = dump(&out);
    drop(server);
    let (listed_local, listed_top): (Vec<serde_json::Value>, Vec<serde_json::Value>) =
        common::paired(&local, &top).filter(|(_, t)| t["floored"] == false).map(|(l, t)| (l.clone(), t.clone())).unzip();
    eprintln!("top-20 judge: {} of {} judgments had every option listed", listed_top.len(), top.len());
    assert!(listed_top.len() * 2 >= top.len(), "only {} of {} judgments listed every option", listed_top.len(), top.len());
    let worst = assert_same_trace(&listed_local, &listed_top, 1e-4);
    eprintln!("top-20 judge: largest local-remote stance difference {worst:.2e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_killed_mid_trace_loses_nothing_and_the_trace_resumes() {
    let dir = common::temp_dir("remote", "killed");
    let reference = local_reference(&dir);
    let port = free_port();
    let server = serve(port);
    // Requests pass through a proxy that counts them.
    let counting = Proxy::start(port, Fault::None);
    let engines = write_engines(
        &dir,
        &format!("[engine.box]\nurls = [\"http://127.0.0.1:{}/v1\"]\nretries = 2\nbackoff_s = 0.05\nconcurrency = 1\n", counting.port),
    );
    let args = |out: &Path| {
        let mut a = trace_args(out);
        a.extend(["--engines", engines.to_str().unwrap(), "--generator-engine", "box", "--judge-engine", "local"].map(String::from));
        a
    };
    let out = dir.join("trace");
    let mut child = bin().args(args(&out)).stderr(Stdio::piped()).spawn().unwrap();
    let store = out.join("trace.sqlite");
    let started = Instant::now();
    while counting.seen() < 3 {
        // Only a guard against a hang: the judge check runs first, as long as the machine takes.
        assert!(child.try_wait().unwrap().is_none(), "the trace ended before the server answered 3 requests");
        assert!(started.elapsed() < Duration::from_secs(1800), "no answers within 30 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(server);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let kept = count_generations(&store);
    assert!(
        !status.success() && (2..8).contains(&kept),
        "the trace should fail once the server is gone, keeping the answers it had ({kept} stored): {err}"
    );
    assert!(err.contains("gave up after 3 tries"), "{err}");

    let _server = serve(port);
    let o = bin().args(args(&out)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_trace(&reference, &dump(&out), 1e-4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_per_checkpoint_is_started_for_missing_work_and_stopped() {
    let dir = common::temp_dir("remote", "launch");
    let reference = local_reference(&dir);
    let engines = write_engines(&dir, &format!(
        "[engine.per-checkpoint]\nlaunch = \"'{}' serve --model {{model}} --port {{port}} --batch-size 8 --name launched-by-test\"\nready_timeout_s = 60\n",
        env!("CARGO_BIN_EXE_valuedrift")));
    let out = dir.join("trace");
    let args = |extra: &[&str]| {
        let mut a = trace_args(&out);
        a.extend(["--engines", engines.to_str().unwrap(), "--generator-engine", "per-checkpoint"].map(String::from));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let o = bin().args(args(&[])).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_trace(&reference, &dump(&out), 1e-4);
    let leftover = Command::new("pgrep").args(["-f", "launched-by-test"]).output().unwrap();
    assert!(leftover.stdout.is_empty(), "a launched server outlived its checkpoint");
    // Resuming a finished trace starts no server: a launch command that cannot run is never run.
    let broken = write_engines(&dir, "[engine.per-checkpoint]\nlaunch = \"false {model} {port}\"\n");
    let mut a = trace_args(&out);
    a.extend(["--engines", broken.to_str().unwrap(), "--generator-engine", "per-checkpoint"].map(String::from));
    let o = bin().args(&a).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // A fresh store needs the server, and says why it could not start.
    let o = bin().args(&a).args(["--store", dir.join("other.sqlite").to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("exited"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

fn count_generations(store: &Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else { return 0 };
    let _ = conn.busy_timeout(Duration::from_secs(2));
    conn.query_row("SELECT COUNT(*) FROM generations", [], |r| r.get(0)).unwrap_or(0)
}

/// What the misbehaving server does.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Passes everything through.
    None,
    /// Among the first requests: a 500, malformed JSON, a hang past the client's timeout, then
    /// every fourth request a 503; the rest pass through.
    Flaky,
    /// Passes everything through, with the token 'oppose' removed from top log-probs.
    HideOppose,
    /// 401 to everything.
    Unauthorized,
}

/// A small HTTP server in front of `valuedrift serve` that misbehaves as told.
struct Proxy {
    port: u16,
    faults: Arc<AtomicUsize>,
    seen: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: u16, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let (counter, requests) = (faults.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (faults, seen) = (counter.clone(), seen.clone());
                std::thread::spawn(move || serve_one(stream, upstream, fault, &seen, &faults));
            }
        });
        Proxy { port, faults, seen: requests }
    }

    fn seen(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }

    fn faults(&self) -> usize {
        self.faults.load(Ordering::Relaxed)
    }
}

fn serve_one(mut client: TcpStream, upstream: u16, fault: Fault, seen: &AtomicUsize, faults: &AtomicUsize) {
    let Some((head, body)) = read_request(&mut client) else { return };
    let n = seen.fetch_add(1, Ordering::Relaxed);
    let reply = |client: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    match fault {
        Fault::Unauthorized => return reply(&mut client, "401 Unauthorized", r#"{"error": {"message": "bad key"}}"#),
        Fault::Flaky if n == 1 || (n > 4 && n.is_multiple_of(4)) => {
            faults.fetch_add(1, Ordering::Relaxed);
            return reply(&mut client, if n == 1 { "500 Internal Server Error" } else { "503 Service Unavailable" }, "{}");
        }
        Fault::Flaky if n == 2 => {
            faults.fetch_add(1, Ordering::Relaxed);
            return reply(&mut client, "200 OK", r#"{"choices": [{"text": "#);
        }
        Fault::Flaky if n == 3 => {
            faults.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(12));
            return;
        }
        _ => {}
    }
    // A dead server behind: the client sees its connection dropped.
    let Some((status, mut text)) = forward(upstream, &head, &body) else { return };
    if fault == Fault::HideOppose {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for entry in v.pointer_mut("/choices/0/logprobs/content").and_then(|c| c.as_array_mut()).into_iter().flatten() {
            if let Some(top) = entry["top_logprobs"].as_array_mut() {
                top.retain(|t| !"oppose".starts_with(t["token"].as_str().unwrap_or("-")));
            }
            if "oppose".starts_with(entry["token"].as_str().unwrap_or("-")) {
                entry["token"] = "?".into();
            }
        }
        text = v.to_string();
    }
    reply(&mut client, &status, &text);
}

/// The request line and headers, and the body (by Content-Length).
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Sends the request on to the real server; its status line and body.
fn forward(upstream: u16, head: &str, body: &[u8]) -> Option<(String, String)> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    let request_line = head.lines().next()?;
    write!(up, "{request_line}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .ok()?;
    up.write_all(body).ok()?;
    let mut response = String::new();
    up.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.split_once(' ')?.1.to_string();
    Some((status, body.to_string()))
}
