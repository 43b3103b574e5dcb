//! The launcher: the hosting binary re-executed as `<binary> __portcullis-exec …`, which sets
//! the resource limits on itself with `setrlimit` and then replaces itself with the program
//! (`exec`). Limits set this way bind the program and everything it starts, without any
//! `unsafe` code between `fork` and `exec` in the server.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;

use portcullis_config::ResourceLimits;
use rustix::process::{Resource, Rlimit, setrlimit};

/// The first argument that makes the binary act as the launcher.
pub const MARKER: &str = "__portcullis-exec";
const CHECK: &str = "--check";
/// Launcher flag: the program gets SIGKILL when the process that started it dies.
pub(crate) const DIE_WITH_PARENT: &str = "--die-with-parent";
const CHECKED: &str = "portcullis-exec ok";

/// Call first thing in `main` of every binary that serves the command pack: when the process
/// was started as the launcher, this applies the limits and `exec`s the program (it never
/// returns then); otherwise it returns at once.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(MARKER.as_ref()) {
        return;
    }
    let args: Vec<OsString> = args.collect();
    let code = match launch(&args) {
        Ok(()) => 0,
        Err(message) => {
            // stderr is the command's captured stderr: the server shows this.
            eprintln!("portcullis: cannot start the command: {message}");
            127
        }
    };
    std::process::exit(code);
}

/// `--cpu N --as N --nofile N --nproc N --fsize N -- PROGRAM ARGS…` or `--check`.
fn launch(args: &[OsString]) -> Result<(), String> {
    if args.first().is_some_and(|a| a == CHECK) {
        // On stderr: stdout is never written by the binary, launcher or not.
        eprintln!("{CHECKED}");
        return Ok(());
    }
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("the launcher needs `--` before the program")?;
    let (flags, rest) = args.split_at(split);
    let rest = &rest[1..];
    let program = rest.first().ok_or("no program after `--`")?;
    let mut i = 0;
    while i < flags.len() {
        let flag = flags[i].to_str().ok_or("bad flag")?;
        if flag == DIE_WITH_PARENT {
            // The program is killed when the server dies, however it dies (a SIGKILL
            // leaves nobody to kill its group). Kept across `exec`.
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(|e| format!("prctl PR_SET_PDEATHSIG: {e}"))?;
            if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
                return Err("the server is already gone".to_owned());
            }
            i += 1;
            continue;
        }
        let value: u64 = flags
            .get(i + 1)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("`{flag}` needs a number"))?;
        let resource = match flag {
            "--cpu" => Resource::Cpu,
            "--as" => Resource::As,
            "--nofile" => Resource::Nofile,
            "--nproc" => Resource::Nproc,
            "--fsize" => Resource::Fsize,
            other => return Err(format!("unknown limit `{other}`")),
        };
        setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(|e| format!("setrlimit {flag}: {e}"))?;
        i += 2;
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the launcher is the command pack's own helper: it replaces itself with the allowlisted program"
    )]
    let error = std::process::Command::new(program).args(&rest[1..]).exec();
    Err(format!("exec: {error}"))
}

/// The launcher arguments for `limits`, ending with `--` (the program follows).
pub(crate) fn arguments(limits: &ResourceLimits) -> Vec<String> {
    let mib = 1024 * 1024u64;
    limit_arguments(
        &[
            ("--cpu", Some(limits.cpu_secs)),
            ("--as", Some(limits.memory_mib.saturating_mul(mib))),
            ("--nofile", Some(limits.open_files)),
            ("--fsize", Some(limits.file_size_mib.saturating_mul(mib))),
            ("--nproc", limits.processes),
        ],
        false,
    )
}

/// The launcher arguments setting each limit that has a value, ending with `--`; with
/// `die_with_parent`, the program is killed when the server dies.
pub(crate) fn limit_arguments(
    limits: &[(&str, Option<u64>)],
    die_with_parent: bool,
) -> Vec<String> {
    let mut arguments = vec![MARKER.to_owned()];
    if die_with_parent {
        arguments.push(DIE_WITH_PARENT.to_owned());
    }
    for (flag, value) in limits {
        if let Some(value) = value {
            arguments.extend([(*flag).to_owned(), value.to_string()]);
        }
    }
    arguments.push("--".to_owned());
    arguments
}

/// Whether `binary` answers as the launcher (the hosting program calls
/// [`run_if_requested`]).
pub(crate) async fn check(binary: &std::path::Path) -> bool {
    #[allow(
        clippy::disallowed_methods,
        reason = "the command pack checks its launcher"
    )]
    let output = tokio::process::Command::new(binary)
        .args([MARKER, CHECK])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    output.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stderr).trim() == CHECKED)
}
