//! One run of a command: the launcher started in its own process group with a clean
//! environment, output captured up to the cap, the whole group killed on timeout,
//! cancellation, too much output, and after the program exits (nothing it started outlives
//! the call), then the exit code mapped to a result.

#![allow(
    deprecated,
    reason = "MCP logging is deprecated by SEP-2577 but still part of both eras we serve"
)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use portcullis_config::CommandOutput;
use portcullis_core::{ToolCall, ToolError, ToolOutput};
use rmcp::model::{CallToolResult, ContentBlock, LoggingLevel};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::{CommandPack, Program, launcher};

/// Kills the whole process group when dropped: on every way out of a run, including the
/// guard dropping the call's future on timeout or cancellation.
struct Group(Option<i32>);

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.0
            && let Some(pid) = rustix::process::Pid::from_raw(pgid)
        {
            // The group may already be gone (ESRCH): nothing to do then.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one stream produced.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    total: usize,
    truncated: bool,
}

/// Reads `stream` into at most `max` bytes; past it, keeps counting, marks the capture
/// truncated and says so through `over`.
async fn capture(
    mut stream: impl AsyncRead + Unpin,
    max: usize,
    over: tokio::sync::mpsc::Sender<()>,
    lines: Option<tokio::sync::mpsc::Sender<String>>,
) -> Captured {
    let mut captured = Captured::default();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        captured.total += n;
        let room = max.saturating_sub(captured.bytes.len());
        if n > room {
            captured.bytes.extend_from_slice(&buffer[..room]);
            captured.truncated = true;
            let _ = over.try_send(());
            break;
        }
        if let Some(lines) = &lines {
            partial.extend_from_slice(&buffer[..n]);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                // A client too slow for the lines misses some; the run never waits.
                let _ = lines.try_send(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            // A line longer than the buffer is sent in pieces rather than held.
            if partial.len() > buffer.len() {
                let _ = lines.try_send(String::from_utf8_lossy(&partial).into_owned());
                partial.clear();
            }
        }
        captured.bytes.extend_from_slice(&buffer[..n]);
    }
    if let Some(lines) = &lines
        && !partial.is_empty()
    {
        let _ = lines.try_send(String::from_utf8_lossy(&partial).trim_end().to_owned());
    }
    captured
}

/// The output as text, with the root's location on the host replaced by the root's name:
/// absolute paths (`ruff` prints them) must not reveal where the root lives.
fn scrubbed(bytes: &[u8], command: &CommandPack) -> String {
    scrub_text(&String::from_utf8_lossy(bytes), command)
}

fn scrub_text(text: &str, command: &CommandPack) -> String {
    let host = command.jail.host_path("");
    let host = host.to_string_lossy();
    text.replace(&format!("{host}/"), "")
        .replace(host.as_ref(), ".")
}

pub(super) async fn run(
    command: &CommandPack,
    program: &Program,
    path: &Path,
    args: &[String],
    selected: &str,
    call: &ToolCall,
) -> Result<ToolOutput, ToolError> {
    let started = Instant::now();
    let scratch = tempfile::tempdir().map_err(|e| ToolError::internal("a scratch HOME", e))?;
    let cwd = command.jail.host_path(&command.working_dir);
    #[allow(
        clippy::disallowed_methods,
        reason = "the command pack is the one place that runs programs: allowlisted, no shell, clean env"
    )]
    let mut child = tokio::process::Command::new(&command.launcher);
    child
        .args(launcher::arguments(&command.limits))
        .arg(path)
        .args(args)
        .env_clear()
        .env("PATH", &command.search_path)
        .env("HOME", scratch.path())
        .env("LANG", "C.UTF-8")
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = command.user {
        child.uid(uid).gid(gid);
    }
    let mut child = child
        .spawn()
        .map_err(|e| ToolError::internal(format!("starting `{}`", program.name), e))?;
    let mut group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (over_tx, mut over_rx) = tokio::sync::mpsc::channel(2);
    let max = command.max_output;
    let context = &call.context;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<String>(256);
    let read_out = async {
        match stdout {
            Some(s) => capture(s, max, over_tx.clone(), Some(lines_tx)).await,
            None => Captured::default(),
        }
    };
    let read_err = async {
        match stderr {
            Some(s) => capture(s, max, over_tx.clone(), None).await,
            None => Captured::default(),
        }
    };
    let deadline = tokio::time::Instant::now() + command.timeout;
    // Progress every second, and each output line as a log message when the client asked
    // for them (the context drops them otherwise). Never ends on its own.
    let chatter = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut open = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let secs = started.elapsed().as_secs_f64();
                    context
                        .progress(secs, Some(command.timeout.as_secs_f64()), Some("running"))
                        .await;
                }
                line = lines_rx.recv(), if open => match line {
                    Some(line) => {
                        context
                            .log(LoggingLevel::Info, &command.name, serde_json::Value::String(scrub_text(&line, command)))
                            .await;
                    }
                    None => open = false,
                },
            }
        }
    };
    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut,
        TooMuchOutput,
        Cancelled,
    }
    let outputs = async { tokio::join!(read_out, read_err) };
    tokio::pin!(outputs);
    let mut captured = None;
    let end = tokio::select! {
        status = async {
            let (out, err) = (&mut outputs).await;
            captured = Some((out, err));
            child.wait().await
        } => End::Exited(status),
        () = tokio::time::sleep_until(deadline) => End::TimedOut,
        Some(()) = over_rx.recv() => End::TooMuchOutput,
        () = call.cancel.cancelled() => End::Cancelled,
        () = chatter => End::Cancelled,
    };
    // Whatever happened, nothing of the run may outlive it.
    group.kill();
    let (out, err) = match captured {
        Some(captured) => captured,
        // The pipes close once the group is dead; a program that escaped the group and kept
        // them open is not waited for.
        None => tokio::time::timeout(Duration::from_secs(2), &mut outputs)
            .await
            .unwrap_or_default(),
    };
    let (status, killed) = match end {
        // Stopping at the cap closes the pipe, and the program may die of that (SIGPIPE)
        // before the cap is noticed: the cap is still why it ended.
        End::Exited(status) if out.truncated || err.truncated => {
            (status.ok(), Some("output over the cap"))
        }
        End::Exited(status) => (status.ok(), None),
        other => {
            let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            let why = match other {
                End::TimedOut => "timed out",
                End::TooMuchOutput => "output over the cap",
                _ => "cancelled",
            };
            (status.ok().and_then(Result::ok), Some(why))
        }
    };
    drop(group);
    let exit_code = status.and_then(|s| s.code());
    metrics::counter!(
        "portcullis_command_runs_total",
        "tool" => command.name.clone(),
        "outcome" => match (killed, exit_code) {
            (Some(_), _) => "killed",
            (None, Some(code)) if command.ok_exit_codes.contains(&code) => "ok",
            _ => "failed",
        },
    )
    .increment(1);
    tracing::info!(
        tool = %command.name,
        program = %program.name,
        arg_keys = ?call.arguments.keys().collect::<Vec<_>>(),
        exit_code,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        stdout_bytes = out.total,
        stderr_bytes = err.total,
        killed = killed.unwrap_or("no"),
        "command run"
    );
    let stdout = scrubbed(&out.bytes, command);
    let stderr = scrubbed(&err.bytes, command);
    let marker = |c: &Captured| {
        if c.truncated {
            format!(
                "\n[truncated: {} of {} bytes shown]",
                c.bytes.len(),
                c.total
            )
        } else {
            String::new()
        }
    };
    match killed {
        Some("timed out") => {
            return Err(ToolError::rejected(format!(
                "`{}` ran longer than {} s and was stopped{}",
                program.name,
                command.timeout.as_secs(),
                excerpt(&stdout, &stderr)
            )));
        }
        Some("output over the cap") => {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "`{}` wrote more than {} bytes and was stopped:\n{stdout}{}",
                program.name,
                command.max_output,
                marker(&out)
            ))])
            .into());
        }
        Some(_) => return Err(ToolError::rejected("the run was cancelled")),
        None => {}
    }
    let Some(code) = exit_code else {
        return Err(ToolError::rejected(format!(
            "`{}` was killed by a signal (a resource limit: CPU time, memory, processes or file size){}",
            program.name,
            excerpt(&stdout, &stderr)
        )));
    };
    if !command.ok_exit_codes.contains(&code) {
        return Err(ToolError::rejected(format!(
            "`{}` failed with exit code {code}{}",
            program.name,
            excerpt(&stdout, &stderr)
        )));
    }
    let data = match command.output {
        CommandOutput::Json => Some(serde_json::from_str::<serde_json::Value>(&stdout).map_err(
            |_| {
                ToolError::rejected(format!(
                    "`{}` did not print JSON (exit code {code}){}",
                    program.name,
                    excerpt(&stdout, &stderr)
                ))
            },
        )?),
        CommandOutput::Text => None,
    };
    let text = match &command.template {
        Some(template) => template.render_result(
            minijinja::context! {
                data => minijinja::Value::from(minijinja::value::Serde(&data)),
                stdout => &stdout,
                stderr => &stderr,
                exit_code => code,
                program => selected,
            },
            &command.name,
        )?,
        None if stdout.trim().is_empty() && stderr.trim().is_empty() => {
            format!(
                "`{}` finished with exit code {code} and printed nothing",
                program.name
            )
        }
        None => {
            let mut text = format!("{stdout}{}", marker(&out));
            if !stderr.trim().is_empty() {
                text.push_str(&format!("\n[stderr]\n{stderr}{}", marker(&err)));
            }
            text
        }
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    if let Some(data) = data {
        result.structured_content = Some(match data {
            serde_json::Value::Object(_) => {
                serde_json::json!({ "exit_code": code, "output": data })
            }
            other => serde_json::json!({ "exit_code": code, "output": other }),
        });
    }
    Ok(result.into())
}

/// The last lines of the output, for an error message.
fn excerpt(stdout: &str, stderr: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!(":\n{}", tail.join("\n"))
}
