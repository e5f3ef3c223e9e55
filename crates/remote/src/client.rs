//! The HTTP side of an OpenAI-compatible engine: several base URLs used as one pool, bounded
//! concurrency, timeouts, and retries with backoff on what may pass (429, 5xx, dropped
//! connections, timeouts, malformed bodies). Any other 4xx fails at once with the server's words.
//! The API key is read from an environment variable and never written anywhere.

use crate::{RemoteError, Result};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How to reach an engine and how hard to try.
#[derive(Clone, Debug)]
pub struct EndpointOptions {
    /// Base URLs ending in `/v1` (a bare `http://host:port` gets `/v1` added).
    pub urls: Vec<String>,
    /// The environment variable holding the API key (sent as a bearer token), if any.
    pub api_key_env: Option<String>,
    /// Requests in flight at once, over the whole pool.
    pub concurrency: usize,
    pub timeout: Duration,
    /// Further tries after a failure that may pass.
    pub retries: u32,
    /// First wait between tries; doubled each time, capped at 30 s.
    pub backoff: Duration,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            urls: Vec::new(),
            api_key_env: None,
            concurrency: 16,
            timeout: Duration::from_secs(120),
            retries: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

pub struct Client {
    urls: Vec<String>,
    agent: ureq::Agent,
    /// Never printed: `Client` has no Debug and errors carry URLs and statuses only.
    api_key: Option<String>,
    next: AtomicUsize,
    pub options: EndpointOptions,
}

/// What one try came to.
enum Try {
    Done(Value),
    /// May pass on another try (the reason is kept for the final error).
    Transient(String),
    Fatal(RemoteError),
}

pub fn normalize_url(url: &str) -> String {
    let u = url.trim_end_matches('/');
    if u.ends_with("/v1") {
        u.to_string()
    } else {
        format!("{u}/v1")
    }
}

impl Client {
    pub fn new(options: EndpointOptions) -> Result<Self> {
        if options.urls.is_empty() {
            return Err(RemoteError::Config("an engine needs at least one base URL".into()));
        }
        let api_key = match &options.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| RemoteError::Config(format!("the API key variable {var} is not set")))?),
            None => None,
        };
        let agent = ureq::AgentBuilder::new().timeout(options.timeout).timeout_connect(Duration::from_secs(10)).build();
        let urls = options.urls.iter().map(|u| normalize_url(u)).collect();
        Ok(Client { urls, agent, api_key, next: AtomicUsize::new(0), options })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// POSTs a JSON body to `path` (e.g. "/completions"), trying the pool's URLs in turn;
    /// returns the URL that answered and its answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<(String, Value)> {
        self.call(path, Some(body))
    }

    pub fn get(&self, path: &str) -> Result<(String, Value)> {
        self.call(path, None)
    }

    fn call(&self, path: &str, body: Option<&Value>) -> Result<(String, Value)> {
        let mut last = String::new();
        let mut url = String::new();
        for attempt in 0..=self.options.retries {
            if attempt > 0 {
                std::thread::sleep(self.backoff(attempt));
            }
            url = format!("{}{path}", self.urls[self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len()]);
            match self.try_once(&url, body) {
                Try::Done(v) => return Ok((url, v)),
                Try::Fatal(e) => return Err(e),
                Try::Transient(why) => last = why,
            }
        }
        Err(RemoteError::GaveUp { url, tries: self.options.retries + 1, last })
    }

    fn try_once(&self, url: &str, body: Option<&Value>) -> Try {
        let mut req = match body {
            Some(_) => self.agent.post(url),
            None => self.agent.get(url),
        };
        if let Some(key) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let sent = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match sent {
            Ok(resp) => match resp.into_string() {
                Ok(text) => match serde_json::from_str(&text) {
                    Ok(v) => Try::Done(v),
                    Err(e) => Try::Transient(format!("malformed JSON ({e}): {}", excerpt(&text))),
                },
                Err(e) => Try::Transient(format!("reading the body: {e}")),
            },
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                if status == 429 || status >= 500 {
                    Try::Transient(format!("HTTP {status}: {}", excerpt(&text)))
                } else {
                    Try::Fatal(RemoteError::Refused { url: url.into(), status, body: excerpt(&text) })
                }
            }
            Err(ureq::Error::Transport(t)) => Try::Transient(t.to_string()),
        }
    }

    /// Exponential backoff with jitter, so that many clients do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.options.backoff.as_secs_f64() * 2f64.powi(attempt as i32 - 1);
        let jitter = 0.75 + 0.5 * rand::random::<f64>();
        Duration::from_secs_f64((base * jitter).min(30.0))
    }

    /// Runs `work` on every item with at most `concurrency` in flight, handing each result to
    /// `done(index, output)` on the calling thread as it arrives. After the first failure no new
    /// item starts, the ones in flight finish and are handed over (nothing computed is lost),
    /// and the failure is returned.
    pub fn run_all<T: Sync, O: Send, E>(
        &self,
        items: &[T],
        work: impl Fn(&T) -> Result<O> + Sync,
        mut done: impl FnMut(usize, O) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), Failure<E>> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Result<O>)>();
        let workers = self.options.concurrency.max(1).min(items.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, stop, work) = (&next, &stop, &work);
                scope.spawn(move || loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    let out = work(&items[i]);
                    let failed = out.is_err();
                    if tx.send((i, out)).is_err() || failed {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                });
            }
            drop(tx);
            let mut first: Option<Failure<E>> = None;
            for (i, out) in rx {
                let caller_failed = matches!(first, Some(Failure::Caller(_)));
                match out {
                    Ok(o) if !caller_failed => {
                        if let Err(e) = done(i, o) {
                            stop.store(true, Ordering::Relaxed);
                            first = Some(Failure::Caller(e));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        first.get_or_insert(Failure::Remote(e));
                    }
                }
            }
            first.map_or(Ok(()), Err)
        })
    }
}

/// Why `run_all` stopped: the engine failed, or the caller's `done` did.
#[derive(Debug)]
pub enum Failure<E> {
    Remote(RemoteError),
    Caller(E),
}

/// The start of a server's answer, for error messages.
pub fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}
