//! `portcullis audit verify`: checks the hash chain of audit files (or of the PostgreSQL
//! audit table) and names the first record that does not belong.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_server::audit::chain::{Hasher, Verifier, check_head};

use crate::{EX_DATAERR, EX_FAILURE, EX_USAGE};

/// What to verify.
pub(crate) struct Verify {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) config: Option<PathBuf>,
    pub(crate) key_env: Option<String>,
    pub(crate) continuing: bool,
    pub(crate) no_head: bool,
    pub(crate) postgres: Option<String>,
    pub(crate) table: Option<String>,
}

pub(crate) fn verify(request: Verify) -> ExitCode {
    let usage = |message: String| {
        eprintln!("portcullis: {message}");
        ExitCode::from(EX_USAGE)
    };
    let config = match &request.config {
        Some(path) => match portcullis_config::load(path) {
            Ok(config) => Some(config),
            Err(error) => return usage(error.to_string()),
        },
        None => None,
    };
    let section = config.as_ref().and_then(|c| c.audit.as_ref());
    if request.config.is_some() && section.is_none() {
        return usage("the config has no [audit] section".to_owned());
    }
    let key = match &request.key_env {
        Some(var) => match std::env::var(var) {
            Ok(key) => Some(key),
            Err(_) => return usage(format!("the environment variable {var} is not set")),
        },
        None => section
            .and_then(|s| s.hmac_key.as_ref())
            .map(|k| k.expose().to_owned()),
    };
    let hasher = Hasher::new(key.as_deref());

    if let Some(url) = &request.postgres {
        let table = request
            .table
            .clone()
            .or_else(|| {
                section
                    .and_then(|s| s.postgres.as_ref())
                    .map(|p| p.table.clone())
            })
            .unwrap_or_else(|| "portcullis_audit".to_owned());
        return verify_postgres(url, &table, key.as_deref());
    }

    let mut files = request.files.clone();
    if files.is_empty() {
        let Some(section) = section else {
            return usage("name the audit files to verify, or --config, or --postgres".to_owned());
        };
        let base = config
            .as_ref()
            .map_or(Path::new("."), |c| c.base_dir.as_path());
        let path = base.join(&section.path);
        files = portcullis_server::audit::chain_files(&path);
        // A server may rotate the log while this reads it: a file then moves under the
        // reader, and the chain seems to skip. Appends alone never break a read (the head
        // is read first). So a break seen while the set of files changed is read again,
        // from the new set, a few times; a break in an unchanged set is a break.
        for _ in 0..3 {
            let outcome = verify_files(&hasher, &files, request.continuing, request.no_head);
            let now = portcullis_server::audit::chain_files(&path);
            match outcome {
                Err(Failure::Broken(_)) if now != files => files = now,
                outcome => return report(outcome, usage),
            }
        }
    }
    report(
        verify_files(&hasher, &files, request.continuing, request.no_head),
        usage,
    )
}

/// The command's answer to a verification.
fn report(outcome: Result<String, Failure>, usage: impl Fn(String) -> ExitCode) -> ExitCode {
    match outcome {
        Ok(summary) => {
            eprintln!("portcullis: audit chain intact: {summary}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => usage(message),
        Err(Failure::Broken(message)) => {
            eprintln!("portcullis: audit chain broken: {message}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

enum Failure {
    Usage(String),
    Broken(String),
}

/// The head file of a log file (`NAME.head`, also for a rotated `NAME.N`).
fn head_of(file: &Path) -> PathBuf {
    let text = file.to_string_lossy();
    let base = match text.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => &text,
    };
    portcullis_server::audit::head_path(Path::new(base))
}

fn verify_files(
    hasher: &Hasher,
    files: &[PathBuf],
    continuing: bool,
    no_head: bool,
) -> Result<String, Failure> {
    // The head first: a server may be writing while this reads, and the files read after
    // the head are then at least as new as what it vouches for.
    let head_before = files
        .iter()
        .map(|file| head_of(file))
        .find_map(|head| portcullis_server::operator_file::read_to_string(&head).ok());
    let vouched = head_before
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text.trim()).ok())
        .and_then(|head| head["head_seq"].as_u64());
    // Files in chain order, whatever order the shell gave them in (NAME.10 after NAME.9).
    let mut loaded = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
        let first = text
            .lines()
            .next()
            .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .and_then(|v| v["seq"].as_u64())
            .unwrap_or(u64::MAX);
        loaded.push((first, file.clone(), text));
    }
    loaded.sort_by_key(|(first, _, _)| *first);
    let mut verifier = Verifier::new(hasher.clone(), continuing);
    let mut hashes: Vec<(u64, String)> = Vec::new();
    let newest_file = loaded.last().map(|(_, f, _)| f.clone());
    for (_, file, text) in &loaded {
        let mut lines: Vec<&str> = text.lines().collect();
        if !text.is_empty() && !text.ends_with('\n') {
            // The last line of the newest file may be a batch a server is writing now: it is
            // left out when the head read before vouches only for records before it. A
            // record the head vouches for that ends early was cut short.
            let complete_seq = lines
                .iter()
                .rev()
                .skip(1)
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .and_then(|r| r["seq"].as_u64())
                .unwrap_or(0);
            let being_written = Some(file) == newest_file.as_ref()
                && vouched.is_some_and(|seq| seq <= complete_seq);
            if !being_written {
                let line = text.lines().count();
                return Err(Failure::Broken(format!(
                    "{}:{line}: the file ends in the middle of a record (cut short)",
                    file.display()
                )));
            }
            eprintln!(
                "portcullis: warning: {}: its last line is incomplete and was left out (a record a server is writing now, or text the head file does not vouch for)",
                file.display()
            );
            lines.pop();
        }
        for (index, line) in lines.into_iter().enumerate() {
            verifier.next(line).map_err(|reason| {
                Failure::Broken(format!("{}:{}: {reason}", file.display(), index + 1))
            })?;
            let end = verifier.end();
            hashes.push((end.last_seq, end.last_hash));
        }
    }
    let end = verifier.end();
    let newest = loaded.last().map(|(_, f, _)| f.clone());
    let head = newest.as_deref().map(head_of);
    let mut summary = format!(
        "{} record(s) in {} file(s), last record {}",
        end.records,
        loaded.len(),
        end.last_seq
    );
    // The head read before the files (the files are at least as new); without one then,
    // the one there now.
    let head_text = head_before.or_else(|| {
        head.as_deref()
            .and_then(|h| portcullis_server::operator_file::read_to_string(h).ok())
    });
    match head_text.map(Ok::<String, std::io::Error>) {
        Some(Ok(text)) => {
            let lookup = |seq: u64| {
                hashes
                    .iter()
                    .rev()
                    .find(|(s, _)| *s == seq)
                    .map(|(_, h)| h.clone())
            };
            check_head(hasher, &text, &end, &lookup).map_err(|reason| {
                Failure::Broken(format!(
                    "{}: {reason}",
                    head.as_deref()
                        .map_or_else(String::new, |h| h.display().to_string())
                ))
            })?;
            summary.push_str("; head file agrees");
        }
        _ if no_head => {
            eprintln!(
                "portcullis: warning: --no-head: records cut off the end of the chain would not be noticed"
            );
        }
        _ => {
            return Err(Failure::Broken(format!(
                "{}: the head file is missing, so records cut off the end of the chain cannot be ruled out (pass --no-head to verify without it)",
                head.as_deref()
                    .map_or_else(String::new, |h| h.display().to_string())
            )));
        }
    }
    Ok(summary)
}

fn verify_postgres(url: &str, table: &str, key: Option<&str>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start the async runtime: {error}");
            return ExitCode::from(EX_FAILURE);
        }
    };
    match runtime.block_on(portcullis_server::audit::verify_postgres(url, table, key)) {
        Ok(chains) => {
            let described: Vec<String> = chains
                .iter()
                .map(|(replica, n)| format!("{replica}: {n} record(s)"))
                .collect();
            eprintln!(
                "portcullis: audit table intact: {} chain(s) ({})",
                chains.len(),
                described.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(broken) if broken.is_broken() => {
            eprintln!("portcullis: audit table broken: {broken}");
            ExitCode::from(EX_DATAERR)
        }
        Err(message) => {
            eprintln!("portcullis: {message}");
            ExitCode::from(EX_USAGE)
        }
    }
}
