//! A server started for one checkpoint: a command template run through `sh -c` in its own
//! process group on a free loopback port, ready when its health check answers, stopped (the
//! whole group) when dropped.

use crate::client::normalize_url;
use crate::{RemoteError, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    model: String,
}

/// A port nobody listens on now (the OS picks it; the server binds it a moment later).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| RemoteError::Config(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| RemoteError::Config(e.to_string()))?.port())
}

impl Server {
    /// Starts `template` with {model}, {port} and {host} filled in and waits until
    /// `GET /health` or `GET /v1/models` answers 200.
    pub fn start(template: &str, model: &Path, ready_timeout: Duration) -> Result<Server> {
        let port = free_port()?;
        let name = model.display().to_string();
        let command = template.replace("{model}", &shell_quote(&name)).replace("{port}", &port.to_string()).replace("{host}", "127.0.0.1");
        let log = std::env::temp_dir().join(format!("valuedrift-server-{}-{port}.log", std::process::id()));
        let fail = |message: String| RemoteError::Launch { model: name.clone(), message };
        let out = std::fs::File::create(&log).map_err(|e| fail(format!("cannot write {}: {e}", log.display())))?;
        let err = out.try_clone().map_err(|e| fail(e.to_string()))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&command).stdin(Stdio::null()).stdout(out).stderr(err);
        // Its own process group, so that stopping it stops whatever the shell started.
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|e| fail(format!("cannot run `{command}`: {e}")))?;
        let mut server = Server { child, port, log, model: name };
        server.wait_ready(&command, ready_timeout)?;
        Ok(server)
    }

    pub fn base_url(&self) -> String {
        normalize_url(&format!("http://127.0.0.1:{}", self.port))
    }

    fn wait_ready(&mut self, command: &str, timeout: Duration) -> Result<()> {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
        let started = Instant::now();
        let root = format!("http://127.0.0.1:{}", self.port);
        loop {
            for path in ["/health", "/v1/models"] {
                if agent.get(&format!("{root}{path}")).call().is_ok() {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failed(format!("`{command}` exited ({status}) before answering")));
            }
            if started.elapsed() > timeout {
                return Err(self.failed(format!("`{command}` did not answer {root}/health within {:.0} s", timeout.as_secs_f64())));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An error carrying the end of the server's log.
    fn failed(&self, message: String) -> RemoteError {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        RemoteError::Launch { model: self.model.clone(), message: format!("{message}; its output ended with:\n{}", tail.join("\n")) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the group is the
        // server's own (it was started as a process-group leader), so nothing else is signalled.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; the group may already be gone, which kill(2) reports harmlessly.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
