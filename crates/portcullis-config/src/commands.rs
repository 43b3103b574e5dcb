//! The command pack's configuration: allowlisted programs (`[[commands]]`), the argv each
//! call builds from typed parameters, and the isolation every run gets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::Secret;
use crate::params::{Param, ParamType, validate_params};
use crate::validate::{Issue, is_identifier, issue};

/// A tool that runs one allowlisted program, never through a shell.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandTool {
    /// Tool name (A-Z, a-z, 0-9, `_`, `-`, `.`; 1 to 64 characters).
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the tool does, for the model.
    pub description: String,
    /// The files root (a `[[files]]` name) the command runs in; `path` parameters are
    /// resolved through its jail.
    pub root: String,
    /// Working directory, relative to the root (default: the root itself).
    #[serde(default)]
    pub working_dir: Option<String>,
    /// The program and its arguments: literal words and placeholders (`{param}` as a whole
    /// argument, or inside one: `--select={codes}`). The first word is the program: a name
    /// looked up in `search_path` at start-up, or an absolute path. Give this or `programs`.
    pub argv: Option<Vec<String>>,
    /// One argv per value of the `select` parameter (`ruff = ["ruff", "check", …]`,
    /// `flake8 = ["flake8", …]`). Give this with `select`, or `argv`.
    #[serde(default)]
    pub programs: BTreeMap<String, Vec<String>>,
    /// The string parameter whose value picks the argv from `programs`; its `enum` must
    /// list exactly the keys of `programs`.
    pub select: Option<String>,
    /// Directories the programs are looked up in, in order (they are also the child's
    /// `PATH`). Default: `/usr/local/bin`, `/usr/bin`, `/bin`.
    #[serde(default)]
    pub search_path: Vec<PathBuf>,
    /// Extra environment of the child (values may use `${ENV}`). Nothing else of the
    /// server's environment reaches it but `PATH`, `LANG` and a scratch `HOME`.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Seconds one run may take; then its whole process group is killed.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Bytes of stdout and of stderr kept each; a child that writes more is killed and its
    /// output marked truncated.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
    /// Exit codes that are results (`ruff` exits 1 when it finds issues). Any other code is a
    /// tool error that shows the output.
    #[serde(default = "default_ok_exit_codes")]
    pub ok_exit_codes: Vec<i32>,
    /// `text` (stdout as the result), or `json`: stdout parsed as JSON into the structured
    /// content as well.
    #[serde(default)]
    pub output: CommandOutput,
    /// A minijinja template for the result's text, with `data` (the parsed JSON, with
    /// `output = "json"`), `stdout`, `stderr`, `exit_code` and `program` (the `select`
    /// value). Default: stdout, then stderr.
    pub text_template: Option<String>,
    /// Runs of this command at once; more are refused as busy.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Resource limits of the child (and of everything it starts).
    #[serde(default)]
    pub limits: ResourceLimits,
    /// Run the child as this user (a name from `/etc/passwd`, e.g. `nobody`). Recommended
    /// when the server runs as root, which the process limit does not bind. The user must
    /// be able to read the root.
    pub run_as: Option<String>,
    /// The program only reads (a linter, a test runner that writes nothing in the root):
    /// the tool is then marked read-only. Off: it counts as a tool that may change files.
    #[serde(default)]
    pub read_only: bool,
    /// The tool's parameters; they become its input schema.
    #[serde(default)]
    pub params: Vec<Param>,
}

/// How a command's stdout is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandOutput {
    /// As text.
    #[default]
    Text,
    /// As text and, parsed, as structured content (a JSON array is wrapped as `items`).
    Json,
}

/// Limits applied to a command's process (with `setrlimit`) before it starts.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceLimits {
    /// CPU seconds.
    pub cpu_secs: u64,
    /// Address space in MiB.
    pub memory_mib: u64,
    /// Open files.
    pub open_files: u64,
    /// Most processes and threads of the user the child runs as (`RLIMIT_NPROC`). The kernel
    /// counts every process of that user, not just this command's, so set it only together
    /// with `run_as` naming a dedicated user; root is exempt. Unset by default.
    pub processes: Option<u64>,
    /// Largest file the child may write, in MiB.
    pub file_size_mib: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            cpu_secs: 60,
            memory_mib: 2048,
            open_files: 256,
            processes: None,
            file_size_mib: 64,
        }
    }
}

fn default_timeout_secs() -> u64 {
    30
}
fn default_max_output_bytes() -> usize {
    1024 * 1024
}
fn default_ok_exit_codes() -> Vec<i32> {
    vec![0]
}
fn default_max_concurrent() -> usize {
    2
}

/// The `{name}` placeholders of one argv word, and whether the word is exactly one of them.
pub fn word_placeholders(word: &str) -> (Vec<String>, bool) {
    let template = crate::Template::parse(word);
    let names: Vec<String> = template
        .variables()
        .filter(|(_, reserved)| !reserved)
        .map(|(name, _)| name.to_owned())
        .collect();
    let alone = matches!(template.alone(), Some((_, false)));
    (names, alone)
}

/// Checks the `[[commands]]`: names, roots, argvs, placeholders and limits. `roots` are the
/// configured files roots.
pub(crate) fn validate(commands: &[CommandTool], roots: &[String]) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("tool");
    for (i, command) in commands.iter().enumerate() {
        let key = format!("commands[{i}]");
        if !is_identifier(&command.name) {
            return Err(issue(
                format!("{key}.name"),
                format!(
                    "tool name `{}` may use only A-Z, a-z, 0-9, `_`, `-` and `.`",
                    command.name
                ),
            ));
        }
        names.check(format!("{key}.name"), command.name.as_str())?;
        if !roots.contains(&command.root) {
            return Err(issue(
                format!("{key}.root"),
                format!(
                    "`{}` is not a `[[files]]` root; roots: {}",
                    command.root,
                    roots.join(", ")
                ),
            ));
        }
        validate_params(&key, &command.params, &[], true)?;
        let argvs: Vec<(&str, &Vec<String>)> = match (&command.argv, &command.select) {
            (Some(argv), None) if command.programs.is_empty() => vec![("argv", argv)],
            (None, Some(select)) if !command.programs.is_empty() => {
                let param = command
                    .params
                    .iter()
                    .find(|p| &p.name == select)
                    .ok_or_else(|| {
                        issue(
                            format!("{key}.select"),
                            format!("`{select}` names no declared parameter"),
                        )
                    })?;
                let keys: Vec<serde_json::Value> = command
                    .programs
                    .keys()
                    .map(|k| serde_json::Value::String(k.clone()))
                    .collect();
                let mut allowed = param.allowed.clone().unwrap_or_default();
                allowed.sort_by_key(ToString::to_string);
                if param.kind != ParamType::String || allowed != keys {
                    return Err(issue(
                        format!("{key}.select"),
                        "the selecting parameter must be a string whose `enum` lists exactly the keys of `programs`",
                    ));
                }
                command
                    .programs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v))
                    .collect()
            }
            _ => {
                return Err(issue(
                    key,
                    "give `argv`, or `programs` with `select`, not both",
                ));
            }
        };
        let mut used: Vec<String> = command.select.iter().cloned().collect();
        for (label, argv) in argvs {
            let Some(program) = argv.first() else {
                return Err(issue(format!("{key}.{label}"), "must name a program"));
            };
            if program.contains('{') {
                return Err(issue(
                    format!("{key}.{label}"),
                    "the program must be a literal name or path, never a placeholder",
                ));
            }
            for word in argv {
                for name in word_placeholders(word).0 {
                    if !command.params.iter().any(|p| p.name == name) {
                        return Err(issue(
                            format!("{key}.{label}"),
                            format!("`{{{name}}}` names no declared parameter"),
                        ));
                    }
                    used.push(name);
                }
            }
        }
        for param in &command.params {
            if !used.contains(&param.name) {
                return Err(issue(
                    format!("{key}.params"),
                    format!(
                        "parameter `{}` is declared but not used in the argv",
                        param.name
                    ),
                ));
            }
        }
        if command.timeout_secs == 0
            || command.max_concurrent == 0
            || command.max_output_bytes < 1024
        {
            return Err(issue(
                key,
                "`timeout_secs` and `max_concurrent` must be at least 1, `max_output_bytes` at least 1024",
            ));
        }
        if let Some(dir) = &command.working_dir
            && (dir.starts_with('/') || dir.split('/').any(|p| p == ".."))
        {
            return Err(issue(
                format!("{key}.working_dir"),
                "must be relative to the root, without `..`",
            ));
        }
    }
    Ok(())
}

/// What `portcullis check` warns about: placeholders that can stand where a program reads
/// options (before a `--`), where a value could be taken as a flag.
pub(crate) fn warnings(commands: &[CommandTool]) -> Vec<String> {
    let mut out = Vec::new();
    for command in commands {
        let argvs: Vec<&Vec<String>> = command
            .argv
            .iter()
            .chain(command.programs.values())
            .collect();
        for argv in argvs {
            let end_of_options = argv.iter().position(|w| w == "--").unwrap_or(argv.len());
            for word in &argv[1..end_of_options.max(1)] {
                let (names, alone) = word_placeholders(word);
                for name in names {
                    let allows_dash = command
                        .params
                        .iter()
                        .any(|p| p.name == name && p.allow_dash);
                    if alone && !allows_dash {
                        // Refused at run time when it starts with `-`; still worth knowing.
                        out.push(format!(
                            "command `{}`: `{{{name}}}` stands before `--`; values starting with `-` are refused, but put `--` before it so the program never reads it as an option",
                            command.name
                        ));
                    } else if alone {
                        out.push(format!(
                            "command `{}`: `{{{name}}}` allows values starting with `-` and stands before `--`: the model can pass options to the program",
                            command.name
                        ));
                    }
                }
            }
        }
    }
    out
}
