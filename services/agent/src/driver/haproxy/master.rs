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
    #[error("the master did not reload within {0:?}")]
    NotReloaded(Duration),
    #[error("old workers {0:?} still take connections after {1:?}")]
    OldWorkers(Vec<i32>, Duration),
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
                return Err(MasterError::NotReloaded(timeout));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_for_worker(Some(before), left.max(Duration::from_secs(1)))
            .await?;
        self.wait_for_old_workers_to_stop(timeout).await
    }

    /// Waits until every worker that was old when this began is stopping (it takes no new
    /// connection) or gone. The list is read again each round: a worker that exits between two
    /// questions drops out of `show proc`, and asking it anything through the master then gets
    /// "Can't find the target PID" (never an empty answer), which counts as gone.
    async fn wait_for_old_workers_to_stop(&self, timeout: Duration) -> Result<(), MasterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut waiting = old_workers(&self.command("show proc").await?);
        while !waiting.is_empty() {
            let listed = self
                .command("show proc")
                .await
                .map(|answer| old_workers(&answer))
                .unwrap_or_else(|_| waiting.clone());
            let mut still = Vec::new();
            for pid in waiting.into_iter().filter(|pid| listed.contains(pid)) {
                let info = self
                    .command(&format!("@!{pid} show info"))
                    .await
                    .unwrap_or_default();
                if !stopping_or_gone(&info) {
                    still.push(pid);
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MasterError::OldWorkers(waiting, timeout));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
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

/// Whether a worker's `show info` answer (through the master) says it is stopping, or is not a
/// `show info` at all: a worker that is gone gets the master's "Can't find the target PID", and
/// one whose CLI is already closed an empty answer. A running worker's info always has its `Pid:`.
fn stopping_or_gone(info: &str) -> bool {
    let mut lines = info.lines().map(str::trim);
    !info.lines().any(|l| l.starts_with("Pid:")) || lines.any(|l| l == "Stopping: 1")
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
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

    /// A master CLI that answers like HAProxy 2.6 after a reload whose old worker (4242) has
    /// already exited when it is asked about: listed by `show proc`, unknown to `@!4242`.
    async fn fake_master(dir: &std::path::Path) -> PathBuf {
        let socket = dir.join("master.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut command = String::new();
                let _ = stream.read_to_string(&mut command).await;
                let answer = if command.starts_with("show proc") {
                    "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
                     100             master          1 [failed: 0]   0d00h00m01s     2.6.12\n\
                     # workers\n\
                     200             worker          0               0d00h00m00s     2.6.12\n\
                     # old workers\n\
                     4242            worker          1               0d00h00m01s     2.6.12\n\
                     # programs\n\n"
                        .to_owned()
                } else {
                    format!(
                        "Can't find the target PID matching the prefix '{}'\n",
                        command.split_whitespace().next().unwrap_or_default()
                    )
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        socket
    }

    #[tokio::test]
    async fn an_old_worker_gone_before_it_is_asked_does_not_stall_the_reload() {
        let dir = std::env::temp_dir().join(format!("lbaas-master-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let master = MasterCli::new(fake_master(&dir).await);
        // Before the fix this waited out the whole timeout: the master's "Can't find the target
        // PID" was taken for a worker still serving.
        tokio::time::timeout(
            Duration::from_secs(5),
            master.wait_for_old_workers_to_stop(Duration::from_secs(30)),
        )
        .await
        .expect("an exited old worker held the reload")
        .unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_worker_that_is_gone_counts_as_stopped() {
        // HAProxy 2.6's master, asked about a pid it no longer lists.
        assert!(stopping_or_gone(
            "Can't find the target PID matching the prefix '@!10871'\n"
        ));
        assert!(stopping_or_gone(""));
        assert!(stopping_or_gone("Name: HAProxy\nPid: 10871\nStopping: 1\n"));
        assert!(!stopping_or_gone(
            "Name: HAProxy\nPid: 10871\nStopping: 0\n"
        ));
    }
}
