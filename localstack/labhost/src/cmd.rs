//! Running system tools (`ip`, `iptables`, `ssh-keygen`) with typed errors.

use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("`{cmd}`: cannot start: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed { cmd: String, status: String, stderr: String },
}

fn render(program: &str, args: &[&str]) -> String {
    std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ")
}

/// Runs to completion; stdout on success.
pub async fn run(program: &str, args: &[&str]) -> Result<String, CmdError> {
    run_with_stdin(program, args, None).await
}

pub async fn run_with_stdin(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CmdError> {
    let cmd = render(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CmdError::Spawn { cmd: cmd.clone(), source })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes()).await.map_err(|source| CmdError::Spawn { cmd: cmd.clone(), source })?;
        drop(pipe);
    }
    let out = child.wait_with_output().await.map_err(|source| CmdError::Spawn { cmd: cmd.clone(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CmdError::Failed { cmd, status: out.status.to_string(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// True if the command exits 0 (for probes such as `iptables -C`).
pub async fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}
