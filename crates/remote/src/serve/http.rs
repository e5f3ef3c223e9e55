//! The HTTP/1.1 layer of `valuedrift serve`: one thread per connection, each socket read under
//! a timeout, so a slow or silent client costs its own thread and gets a 408, never a thread
//! that serves others. Requests are bounded (head 64 KiB: 431; body `max_body_bytes`: 413) and
//! malformed ones are answered 400 before the connection closes. Keep-alive, `Content-Length`
//! and chunked bodies, and `Expect: 100-continue` are supported; nothing else of HTTP is needed
//! by OpenAI clients.

use super::request::ApiError;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request line plus headers read.
const MAX_HEAD_BYTES: usize = 64 << 10;

pub struct Request {
    pub method: String,
    /// The path without its query string or trailing slash.
    pub path: String,
    pub body: Vec<u8>,
    keep_alive: bool,
}

/// Limits on what a client may send.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub read_timeout: Duration,
}

/// A socket whose reads fail with `TimedOut` once the current request's deadline has passed, so
/// that a client trickling bytes cannot stretch a request beyond the read timeout.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Option<Instant>,
    idle_timeout: Duration,
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let wait = match self.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => self.idle_timeout,
        };
        if wait.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(wait))?;
        self.stream.read(buf)
    }
}

type Reader = BufReader<DeadlineStream>;

/// Serves one connection: reads requests, hands each to `answer`, writes its (status, JSON
/// body), until the client closes, asks to close, errs or times out.
pub fn serve_connection(stream: TcpStream, limits: Limits, mut answer: impl FnMut(&Request) -> (u16, String)) {
    if stream.set_write_timeout(Some(limits.read_timeout)).is_err() {
        return;
    }
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(DeadlineStream { stream: read_half, deadline: None, idle_timeout: limits.read_timeout });
    let mut writer = stream;
    loop {
        match read_request(&mut reader, &mut writer, limits) {
            Ok(None) => return,
            Ok(Some(req)) => {
                let (status, body) = answer(&req);
                if write_response(&mut writer, status, &body, req.keep_alive).is_err() || !req.keep_alive {
                    return;
                }
            }
            Err(e) => {
                let body = super::respond::error_body(&e).to_string();
                let _ = write_response(&mut writer, e.status, &body, false);
                return;
            }
        }
    }
}

/// The next request, None when the client closed (or idled past the timeout) between requests.
/// From its first byte, the whole request must arrive within the read timeout.
fn read_request(reader: &mut Reader, writer: &mut TcpStream, limits: Limits) -> Result<Option<Request>, ApiError> {
    reader.get_mut().deadline = None;
    match reader.fill_buf() {
        Ok([]) => return Ok(None),
        Ok(_) => {}
        Err(e) if is_timeout(&e) => return Ok(None),
        Err(_) => return Ok(None),
    }
    reader.get_mut().deadline = Some(Instant::now() + limits.read_timeout);
    let mut head_bytes = 0;
    let Some(request_line) = read_line(reader, &mut head_bytes)? else { return Ok(None) };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::bad(format!("malformed request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ApiError { status: 505, message: format!("{version} is not supported (HTTP/1.0 or 1.1)") });
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut head_bytes)?.ok_or_else(|| ApiError::bad("the connection closed inside the headers"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| ApiError::bad(format!("malformed header {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let connection = header("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if version == "HTTP/1.0" { connection.contains("keep-alive") } else { !connection.contains("close") };
    if header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(|e| io_error(&e))?;
    }
    let body = if header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        read_chunked(reader, limits)?
    } else {
        match header("content-length") {
            None => Vec::new(),
            Some(len) => {
                let len: usize = len.parse().map_err(|_| ApiError::bad(format!("Content-Length {len:?} is not a byte count")))?;
                if len > limits.max_body_bytes {
                    return Err(too_large(len, limits.max_body_bytes));
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).map_err(|e| io_error(&e))?;
                body
            }
        }
    };
    let path = target.split('?').next().unwrap_or("").trim_end_matches('/').to_string();
    Ok(Some(Request { method: method.to_string(), path, body, keep_alive }))
}

/// One CRLF-terminated line of the head; None at the end of the stream.
fn read_line(reader: &mut Reader, head_bytes: &mut usize) -> Result<Option<String>, ApiError> {
    let mut line = Vec::new();
    let limit = (MAX_HEAD_BYTES - *head_bytes + 1) as u64;
    match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
        Ok(0) => return Ok(None),
        Err(e) if is_timeout(&e) => return Err(timed_out()),
        Err(e) => return Err(ApiError::bad(format!("reading the request head: {e}"))),
        Ok(_) => {}
    }
    *head_bytes += line.len();
    if *head_bytes > MAX_HEAD_BYTES {
        return Err(ApiError { status: 431, message: format!("the request line and headers exceed {MAX_HEAD_BYTES} bytes") });
    }
    if line.last() != Some(&b'\n') {
        return Err(ApiError::bad("the connection closed inside the request head"));
    }
    let text = String::from_utf8(line).map_err(|_| ApiError::bad("the request head is not UTF-8"))?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// A chunked body, refused as soon as it grows past the limit.
fn read_chunked(reader: &mut Reader, limits: Limits) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    let mut head_bytes = 0;
    loop {
        let size_line = read_line(reader, &mut head_bytes)?.ok_or_else(|| ApiError::bad("the connection closed inside a chunked body"))?;
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| ApiError::bad(format!("malformed chunk size {size_hex:?}")))?;
        if size == 0 {
            // Trailers, up to the blank line.
            while !read_line(reader, &mut head_bytes)?.is_none_or(|l| l.is_empty()) {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > limits.max_body_bytes {
            return Err(too_large(body.len().saturating_add(size), limits.max_body_bytes));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).map_err(|e| io_error(&e))?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(|e| io_error(&e))?;
        head_bytes = 0;
    }
}

/// Answers a connection that is not served (too many open) and closes it.
pub fn refuse(mut stream: TcpStream, e: &ApiError) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write_response(&mut stream, e.status, &super::respond::error_body(e).to_string(), false);
}

fn write_response(writer: &mut TcpStream, status: u16, body: &str, keep_alive: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nServer: valuedrift\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

fn io_error(e: &std::io::Error) -> ApiError {
    if is_timeout(e) {
        timed_out()
    } else {
        ApiError::bad(format!("reading the request body: {e}"))
    }
}

fn timed_out() -> ApiError {
    ApiError { status: 408, message: "the request took longer than the read timeout to arrive (--read-timeout-s)".into() }
}

fn too_large(len: usize, limit: usize) -> ApiError {
    ApiError { status: 413, message: format!("the body has {len} bytes or more; at most {limit} are read (split the request)") }
}
