//! The command pack (`[[commands]]`): allowlisted programs run as tools. The argv is built
//! from typed parameters (each value one argument, never a shell; values that would read as
//! options refused; `path` values resolved through the files jail), and every run gets a
//! clean environment, a working directory inside its root, its own process group (killed as
//! a whole on timeout, cancellation or too much output), and resource limits set by the
//! launcher (`launcher.rs`) before the program starts.

pub mod launcher;
mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use portcullis_config::{
    CommandOutput, CommandTool, Config, Param, ParamType, Piece, ResourceLimits, Template,
};
use portcullis_core::{CatalogBuilder, NotReady, Readiness, Tool, ToolCall, ToolError, ToolOutput};
use rmcp::model::{Tool as ToolDef, ToolAnnotations};
use serde_json::Value;

use crate::jail::{DenyList, Jail};
use crate::params::{Typed, input_schema, values};
use crate::template::TextTemplate;

/// The pack's name, for `[packs.command]`.
pub const PACK: &str = "command";

/// Where programs are looked up when a command names no `search_path`.
const DEFAULT_SEARCH_PATH: [&str; 3] = ["/usr/local/bin", "/usr/bin", "/bin"];

/// One program a command may run: its name as configured, and where it was found.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub(crate) name: String,
    pub(crate) path: Option<PathBuf>,
}

/// A command tool, resolved at start-up.
pub(crate) struct CommandPack {
    pub(crate) name: String,
    title: Option<String>,
    description: String,
    pub(crate) jail: Jail,
    pub(crate) working_dir: String,
    /// Selector value (or `""` for a single argv) → program and argument words.
    pub(crate) argvs: BTreeMap<String, (Program, Vec<Template>)>,
    pub(crate) select: Option<String>,
    params: Vec<Param>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) search_path: String,
    pub(crate) timeout: Duration,
    pub(crate) max_output: usize,
    pub(crate) ok_exit_codes: Vec<i32>,
    pub(crate) output: CommandOutput,
    pub(crate) template: Option<TextTemplate>,
    pub(crate) slots: tokio::sync::Semaphore,
    pub(crate) max_concurrent: usize,
    pub(crate) limits: ResourceLimits,
    pub(crate) user: Option<(u32, u32)>,
    pub(crate) launcher: PathBuf,
    read_only: bool,
    /// Whether the launcher answered, checked once.
    launcher_ok: tokio::sync::OnceCell<bool>,
}

/// The directories programs are looked up in: `configured` (relative to `base_dir`), or
/// the default ones.
pub(crate) fn search_dirs(configured: &[PathBuf], base_dir: &Path) -> Vec<PathBuf> {
    if configured.is_empty() {
        DEFAULT_SEARCH_PATH.iter().map(PathBuf::from).collect()
    } else {
        configured.iter().map(|d| base_dir.join(d)).collect()
    }
}

/// `dirs` as a `PATH`.
pub(crate) fn joined(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Looks `name` up once: an absolute path as is, else the first executable file of that
/// name in `dirs`.
pub(crate) fn resolve(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let is_executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path = Path::new(name);
    if path.is_absolute() {
        return is_executable(path).then(|| path.to_owned());
    }
    if name.contains('/') {
        return None;
    }
    dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

/// The uid and gid of `user` from `/etc/passwd`.
fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd to find user `{user}`: {e}"))?;
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[0] == user)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .next()
        .ok_or_else(|| format!("user `{user}` is not in /etc/passwd"))
}

/// Adds one tool per `[[commands]]` entry and a readiness check (`command:NAME`) that the
/// programs are installed and the launcher answers.
pub(crate) fn register(
    config: &Config,
    catalog: &mut CatalogBuilder,
    _shared: &mut crate::Shared,
) -> Result<(), String> {
    let launcher = std::env::current_exe()
        .map_err(|e| format!("commands: cannot find this program to launch commands: {e}"))?;
    for command in &config.commands {
        let tool = command_tool(config, command, &launcher)?;
        let tool = Arc::new(tool);
        catalog.readiness(
            format!("command:{}", command.name),
            Ready(Arc::clone(&tool)),
        );
        catalog.tool(Shared(tool));
    }
    Ok(())
}

fn command_tool(
    config: &Config,
    command: &CommandTool,
    launcher: &Path,
) -> Result<CommandPack, String> {
    let name = &command.name;
    let root = config
        .files
        .iter()
        .find(|r| r.name == command.root)
        .ok_or_else(|| format!("command `{name}`: no files root `{}`", command.root))?;
    let deny = DenyList::new(&root.deny, root.deny_ignore_case)
        .map_err(|e| format!("command `{name}`: {e}"))?;
    let jail = Jail::open(&root.name, &config.base_dir.join(&root.path), deny)
        .map_err(|e| format!("command `{name}`: {e}"))?;
    let dirs = search_dirs(&command.search_path, &config.base_dir);
    let search_path = joined(&dirs);
    let mut argvs = BTreeMap::new();
    let configured: Vec<(String, &Vec<String>)> = match &command.argv {
        Some(argv) => vec![(String::new(), argv)],
        None => command
            .programs
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .collect(),
    };
    for (key, argv) in configured {
        let program_name = argv.first().cloned().unwrap_or_default();
        let path = resolve(&program_name, &dirs);
        if path.is_none() {
            tracing::warn!(command = %name, program = %program_name, "program not found; the tool will answer that it is not installed");
        }
        let program = Program {
            name: program_name,
            path,
        };
        let words = argv[1..].iter().map(|w| Template::parse(w)).collect();
        argvs.insert(key, (program, words));
    }
    let template = command
        .text_template
        .as_deref()
        .map(|text| {
            TextTemplate::compile(text, &["data", "stdout", "stderr", "exit_code", "program"])
        })
        .transpose()
        .map_err(|e| format!("command `{name}`: text_template: {e}"))?;
    let user = command.run_as.as_deref().map(user_ids).transpose()?;
    Ok(CommandPack {
        name: name.clone(),
        title: command.title.clone(),
        description: command.description.clone(),
        jail,
        working_dir: command.working_dir.clone().unwrap_or_default(),
        argvs,
        select: command.select.clone(),
        params: command.params.clone(),
        env: command
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect(),
        search_path,
        timeout: Duration::from_secs(command.timeout_secs),
        max_output: command.max_output_bytes,
        ok_exit_codes: command.ok_exit_codes.clone(),
        output: command.output,
        template,
        slots: tokio::sync::Semaphore::new(command.max_concurrent),
        max_concurrent: command.max_concurrent,
        limits: command.limits,
        user,
        launcher: launcher.to_owned(),
        read_only: command.read_only,
        launcher_ok: tokio::sync::OnceCell::new(),
    })
}

/// The programs every command would run and where they were found, for `portcullis check`.
pub fn programs(config: &Config) -> Vec<(String, String, Option<PathBuf>)> {
    config
        .commands
        .iter()
        .flat_map(|command| {
            let dirs = search_dirs(&command.search_path, &config.base_dir);
            command
                .argv
                .iter()
                .chain(command.programs.values())
                .filter_map(|argv| argv.first().cloned())
                .map(move |program| {
                    let found = resolve(&program, &dirs);
                    (command.name.clone(), program, found)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

impl CommandPack {
    /// The argument words of one call, and the program: every placeholder replaced by its
    /// value as exactly one argument (a lone array placeholder: one argument per item).
    async fn argv(&self, call: &ToolCall) -> Result<(&Program, Vec<String>), ToolError> {
        let typed: Vec<Typed> = values(&self.params, &call.arguments);
        let by_name: BTreeMap<&str, (&Param, Typed)> = self
            .params
            .iter()
            .zip(typed)
            .map(|(p, v)| (p.name.as_str(), (p, v)))
            .collect();
        let key = match &self.select {
            Some(select) => match by_name.get(select.as_str()) {
                Some((_, Typed::Text(value))) => value.clone(),
                _ => String::new(),
            },
            None => String::new(),
        };
        let (program, words) = self.argvs.get(&key).ok_or_else(|| {
            ToolError::rejected(format!("`{key}` is not a program of `{}`", self.name))
        })?;
        let mut out = Vec::with_capacity(words.len());
        for word in words {
            // A placeholder of a declared parameter; reserved ones (`{+name}`) and any other
            // braces are the word's own text.
            let param_of = |piece: &Piece| match piece {
                Piece::Var {
                    name,
                    reserved: false,
                } => by_name.get(name.as_str()),
                _ => None,
            };
            if let [piece] = word.pieces()
                && let Some((param, value)) = param_of(piece)
            {
                match value {
                    Typed::Null => {}
                    Typed::Array(items) => {
                        for item in items {
                            out.push(self.value(param, item, true).await?);
                        }
                    }
                    other => out.push(self.value(param, other, true).await?),
                }
                continue;
            }
            // Each value is placed once, never expanded again; the word must not start
            // with `-` because of a value (it would be read as an option).
            let mut text = String::new();
            let mut leading: Option<&Param> = None;
            for piece in word.pieces() {
                match (piece, param_of(piece)) {
                    (_, Some((param, value))) => {
                        let value = match value {
                            Typed::Null => String::new(),
                            other => self.value(param, other, false).await?,
                        };
                        if text.is_empty() && !value.is_empty() {
                            leading = Some(param);
                        }
                        text.push_str(&value);
                    }
                    (Piece::Literal(literal), None) => text.push_str(literal),
                    (Piece::Var { .. }, None) => text.push_str(&piece.to_string()),
                }
            }
            if let Some(param) = leading
                && text.starts_with('-')
                && !param.allow_dash
            {
                return Err(ToolError::rejected(format!(
                    "`{}` must not start with `-`: it would be read as an option",
                    param.name
                )));
            }
            out.push(text);
        }
        Ok((program, out))
    }

    /// One value as an argument. `positional`: the value is a whole argument, so one that
    /// starts with `-` could be read as an option and is refused unless the parameter allows
    /// it.
    async fn value(
        &self,
        param: &Param,
        value: &Typed,
        positional: bool,
    ) -> Result<String, ToolError> {
        let text = match value {
            Typed::Text(s) => s.clone(),
            Typed::Int(i) => i.to_string(),
            Typed::Float(f) => f.to_string(),
            Typed::Bool(b) => b.to_string(),
            Typed::Null | Typed::Array(_) => String::new(),
        };
        if text.contains('\0') {
            return Err(ToolError::rejected(format!(
                "`{}` contains a NUL byte",
                param.name
            )));
        }
        if positional && text.starts_with('-') && !param.allow_dash {
            return Err(ToolError::rejected(format!(
                "`{}` must not start with `-`: it would be read as an option",
                param.name
            )));
        }
        if param.kind != ParamType::Path {
            return Ok(text);
        }
        let at = self.jail.locate(&text).await?;
        if let Some(meta) = &at.meta
            && !param.extensions.is_empty()
        {
            let ok = meta.is_file()
                && param
                    .extensions
                    .iter()
                    .any(|e| at.rel.ends_with(e.as_str()));
            if !ok {
                return Err(ToolError::rejected(format!(
                    "`{}` must be a file ending in {}",
                    param.name,
                    param.extensions.join(", ")
                )));
            }
        }
        // Relative to the working directory, which the resolved path must lie in.
        let base = self.working_dir.trim_matches('/');
        let rel = if base.is_empty() {
            at.rel.clone()
        } else {
            match at.rel.strip_prefix(&format!("{base}/")) {
                Some(rest) => rest.to_owned(),
                None => {
                    return Err(ToolError::rejected(format!(
                        "`{}` must be inside `{base}` of the root `{}`",
                        param.name,
                        self.jail.name()
                    )));
                }
            }
        };
        if rel.is_empty() {
            return Ok(".".to_owned());
        }
        // A path that starts with `-` is passed as `./-…`, never as an option.
        Ok(if rel.starts_with('-') {
            format!("./{rel}")
        } else {
            rel
        })
    }
}

/// The tool (shared with its readiness check).
struct Shared(Arc<CommandPack>);

#[async_trait]
impl Tool for Shared {
    /// Long work: a task when the client can take one.
    fn task_support(&self) -> portcullis_core::TaskSupport {
        portcullis_core::TaskSupport::Optional
    }

    fn pack(&self) -> &str {
        PACK
    }

    fn definition(&self) -> ToolDef {
        let command = &self.0;
        let annotations = ToolAnnotations::new()
            .read_only(command.read_only)
            // A command that may write is not advertised as harmless.
            .destructive(!command.read_only)
            .idempotent(command.read_only)
            .open_world(false);
        let mut tool = ToolDef::new(
            command.name.clone(),
            command.description.clone(),
            input_schema(&command.params),
        )
        .with_annotations(annotations);
        if let Some(title) = &command.title {
            tool = tool.with_title(title.clone());
        }
        tool
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let command = &self.0;
        let (program, args) = command.argv(&call).await?;
        let Some(path) = &program.path else {
            return Err(ToolError::rejected(format!(
                "`{}` is not installed on this server",
                program.name
            )));
        };
        let Ok(_slot) = command.slots.try_acquire() else {
            return Err(ToolError::rejected(format!(
                "`{}` is busy: {} run(s) at once already; try again in a moment",
                command.name, command.max_concurrent
            )));
        };
        let selected = command
            .select
            .as_ref()
            .and_then(|s| call.arguments.get(s))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        run::run(command, program, path, &args, &selected, &call).await
    }
}

/// `/readyz`: every program installed, and the launcher answering.
struct Ready(Arc<CommandPack>);

#[async_trait]
impl Readiness for Ready {
    async fn check(&self) -> Result<(), NotReady> {
        let command = &self.0;
        let missing: Vec<&str> = command
            .argvs
            .values()
            .filter(|(p, _)| p.path.is_none())
            .map(|(p, _)| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(NotReady::new(format!(
                "not installed: {}",
                missing.join(", ")
            )));
        }
        let answered = *command
            .launcher_ok
            .get_or_init(|| launcher::check(&command.launcher))
            .await;
        if !answered {
            return Err(NotReady::new(
                "the command launcher does not answer (the hosting binary must call portcullis_packs::command::launcher::run_if_requested)",
            ));
        }
        Ok(())
    }
}
