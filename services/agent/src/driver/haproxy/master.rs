//! A client of HAProxy's master CLI (`-S master.sock`): `show proc` to see the master and its
//! workers, `reload` for a seamless reload.
use std::{path::PathBuf, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

/// What `show proc` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcState {
    pub master_pid: i32,
    pub reloads: u64,
    pub failed: u64,
    /// The current worker, if one is up.
    pub worker_pid: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("master socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected answer from the master: {0:?}")]
    Parse(String),
    #[error("the reload failed; HAProxy keeps serving the previous configuration")]
    ReloadFailed,
    #[error("no new worker within {0:?}")]
    Timeout(Duration),
}

/// A master that does not answer within this is treated as gone.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a master that answers may go without showing a reload it was asked for before it is
/// asked again.
const RELOAD_RESEND_AFTER: Duration = Duration::from_secs(3);

pub struct MasterCli {
    socket: PathBuf,
}

impl MasterCli {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    async fn command(&self, command: &str) -> Result<String, MasterError> {
        let exchange = async {
            let mut stream = UnixStream::connect(&self.socket).await?;
            stream.write_all(format!("{command}\n").as_bytes()).await?;
            // Closing our side tells the master this is the last command, so it answers and closes.
            stream.shutdown().await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(MasterError::Timeout(COMMAND_TIMEOUT)),
        }
    }

    pub async fn show_proc(&self) -> Result<ProcState, MasterError> {
        let answer = self.command("show proc").await?;
        parse_show_proc(&answer)
    }

    /// Reloads and waits until the master has re-executed and forked a new worker, and every
    /// older worker has begun its soft stop (so it takes no new connection with the old config).
    pub async fn reload(&self, before: &ProcState, timeout: Duration) -> Result<(), MasterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // The master closes the CLI connection when it re-executes; an empty answer is normal.
        let _ = self.command("reload").await;
        let mut sent = tokio::time::Instant::now();
        // A reload command can be lost (the master busy, the exchange timed out before it was
        // read): a master that answers with the same reload count well after it was asked gets
        // asked again. Without this, a lost command cost the whole timeout and failed the apply.
        loop {
            if let Ok(state) = self.show_proc().await {
                if state.failed > before.failed {
                    return Err(MasterError::ReloadFailed);
                }
                if state.reloads > before.reloads {
                    break;
                }
                if sent.elapsed() >= RELOAD_RESEND_AFTER {
                    tracing::warn!(
                        socket = %self.socket.display(),
                        "the master has not reloaded; asking again"
                    );
                    let _ = self.command("reload").await;
                    sent = tokio::time::Instant::now();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MasterError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_for_worker(Some(before), left.max(Duration::from_secs(1)))
            .await?;
        self.wait_for_old_workers_to_stop(timeout).await
    }

    async fn wait_for_old_workers_to_stop(&self, timeout: Duration) -> Result<(), MasterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let answer = self.command("show proc").await?;
        for pid in old_workers(&answer) {
            loop {
                // A worker that is gone answers nothing; one that stops says so in `show info`.
                let info = self
                    .command(&format!("@!{pid} show info"))
                    .await
                    .unwrap_or_default();
                if info.is_empty() || info.lines().any(|l| l.trim() == "Stopping: 1") {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(MasterError::Timeout(timeout));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }

    /// Waits for a worker: any worker when `before` is `None`, otherwise one forked after a reload
    /// that came after `before`.
    pub async fn wait_for_worker(
        &self,
        before: Option<&ProcState>,
        timeout: Duration,
    ) -> Result<(), MasterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Ok(state) = self.show_proc().await {
                match before {
                    Some(b) if state.failed > b.failed => return Err(MasterError::ReloadFailed),
                    Some(b)
                        if state.reloads > b.reloads
                            && state.worker_pid.is_some()
                            && state.worker_pid != b.worker_pid =>
                    {
                        return Ok(());
                    }
                    None if state.worker_pid.is_some() => return Ok(()),
                    _ => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MasterError::Timeout(timeout));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }
}

/// The pids listed under `# old workers`.
fn old_workers(answer: &str) -> Vec<i32> {
    answer
        .split("# old workers")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .take_while(|l| !l.starts_with("# "))
                .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Parses the 2.6 format:
/// ```text
/// #<PID>          <type>          <reloads>       <uptime>        <version>
/// 10870           master          1 [failed: 0]   0d00h00m01s     2.6.12
/// # workers
/// 10919           worker          0               0d00h00m00s     2.6.12
/// ```
pub fn parse_show_proc(answer: &str) -> Result<ProcState, MasterError> {
    let bad = || MasterError::Parse(answer.chars().take(200).collect());
    let mut master = None;
    let mut worker_pid = None;
    let mut section = "";
    for line in answer.lines() {
        let line = line.trim();
        if line.starts_with("# ") {
            section = line.trim_start_matches("# ");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match (fields.get(1).copied(), section) {
            (Some("master"), _) => {
                let pid = fields
                    .first()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?;
                let reloads = fields.get(2).and_then(|r| r.parse().ok()).ok_or_else(bad)?;
                let failed = fields
                    .get(4)
                    .map(|f| f.trim_end_matches(']'))
                    .and_then(|f| f.parse().ok())
                    .unwrap_or(0);
                master = Some((pid, reloads, failed));
            }
            (Some("worker"), "workers") if worker_pid.is_none() => {
                worker_pid = fields.first().and_then(|p| p.parse().ok());
            }
            _ => {}
        }
    }
    let (master_pid, reloads, failed) = master.ok_or_else(bad)?;
    Ok(ProcState {
        master_pid,
        reloads,
        failed,
        worker_pid,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_show_proc() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
                    10870           master          1 [failed: 2]   0d00h00m01s     2.6.12\n\
                    # workers\n\
                    10919           worker          0               0d00h00m00s     2.6.12\n\
                    # old workers\n\
                    10871           worker          1               0d00h00m01s     2.6.12\n\
                    # programs\n\n";
        assert_eq!(
            parse_show_proc(text).unwrap(),
            ProcState {
                master_pid: 10870,
                reloads: 1,
                failed: 2,
                worker_pid: Some(10919)
            }
        );
        assert!(parse_show_proc("garbage").is_err());
        assert_eq!(old_workers(text), vec![10871]);
    }
}
