//! `portcullis init`: writes a commented starter config for a chosen set of packs. Every
//! section is a working minimum (the result passes `portcullis check` as written) with the
//! options worth knowing shown as comments. Relative paths are relative to the new file, so
//! `.` is the directory it is written to.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::EX_USAGE;

/// The section of one pack, or `None` for a pack this command has no starter for.
fn section(pack: &str) -> Option<&'static str> {
    Some(match pack {
        "files" => FILES,
        "prompts" => PROMPTS,
        "sql" => SQL,
        "api" => API,
        "command" => COMMAND,
        "notes" => NOTES,
        "skills" => SKILLS,
        "upstreams" => UPSTREAMS,
        "resources" => RESOURCES,
        _ => return None,
    })
}

pub(crate) fn run(packs: &[String], output: &Path, force: bool) -> ExitCode {
    let usage = |message: &dyn std::fmt::Display| {
        eprintln!("portcullis: {message}");
        ExitCode::from(EX_USAGE)
    };
    let packs = match choose(packs) {
        Ok(packs) => packs,
        Err(message) => return usage(&message),
    };
    let name = server_name(output);
    let text = render(&name, &packs);
    // `create_new` refuses an existing file atomically (no check-then-write race); `--force`
    // replaces it. This writes the operator's own config, never anything a client named.
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    // The SQL starter's seed goes next to the config, under the same rule.
    let seed = packs
        .contains(&"sql")
        .then(|| output.parent().unwrap_or(Path::new("")).join("app.sql"));
    if let Some(seed) = &seed
        && seed.exists()
        && !force
    {
        return usage(&format_args!(
            "{} already exists; pass --force to replace it",
            seed.display()
        ));
    }
    let written = options
        .open(output)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| match &seed {
            Some(seed) => options
                .open(seed)
                .and_then(|mut file| file.write_all(SQL_SEED.as_bytes())),
            None => Ok(()),
        });
    match written {
        Ok(()) => {
            eprintln!(
                "portcullis: wrote {} (packs: {}); next: portcullis check --config {}",
                output.display(),
                packs.join(", "),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => usage(&format_args!(
            "{} already exists; pass --force to replace it",
            output.display()
        )),
        Err(error) => usage(&format_args!("cannot write {}: {error}", output.display())),
    }
}

/// The packs to write, in the order the server registers them, without repeats. `commands`
/// is accepted for `command`; the command pack needs a files root, so it brings `files`.
fn choose(requested: &[String]) -> Result<Vec<&'static str>, String> {
    let known: Vec<&'static str> = portcullis_packs::pack_names().collect();
    let mut wanted = Vec::new();
    for pack in requested.iter().flat_map(|p| p.split(',')).map(str::trim) {
        let pack = if pack == "commands" { "command" } else { pack };
        if pack.is_empty() {
            continue;
        }
        if !known.contains(&pack) {
            return Err(format!(
                "unknown pack `{pack}`; packs: {}",
                known.join(", ")
            ));
        }
        wanted.push(pack);
    }
    if wanted.is_empty() {
        wanted.push("files");
    }
    if wanted.contains(&"command") {
        wanted.push("files");
    }
    Ok(known.into_iter().filter(|p| wanted.contains(p)).collect())
}

/// The name of the directory the config goes to, as a server name (`a-z`, `0-9`, `-`), or
/// `portcullis`.
fn server_name(output: &Path) -> String {
    let dir: PathBuf = std::path::absolute(output)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-').to_owned();
    if name.is_empty() {
        "portcullis".to_owned()
    } else {
        name
    }
}

fn render(name: &str, packs: &[&str]) -> String {
    let mut out = HEADER
        .replace("{packs}", &packs.join(", "))
        .replace("{name}", name);
    for pack in packs {
        if let Some(section) = section(pack) {
            out.push('\n');
            out.push_str(section);
        }
    }
    out.push('\n');
    out.push_str(&POLICIES.replace(
        "{packs}",
        &packs
            .iter()
            .map(|p| {
                format!(
                    "# [packs.{p}]\n# required_scopes = [\"{p}:read\"]\n# timeout_secs = 30\n# rate_limit = {{ per_minute = 60, burst = 10 }}"
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    out
}

const HEADER: &str = r#"# Portcullis configuration (written by `portcullis init`; packs: {packs}).
#
#     portcullis check --config portcullis.toml           # what it offers, and who may use it
#     portcullis serve --config portcullis.toml --stdio   # one client on stdin/stdout
#     portcullis serve --config portcullis.toml           # Streamable HTTP on 127.0.0.1:8080/mcp
#     portcullis client-config claude-desktop --config portcullis.toml   # the client's snippet
#
# Every key is documented in docs/config-reference.md. Unknown keys are errors. Relative
# paths are relative to this file's directory. Any string may use ${VAR} or ${VAR:-default}
# from the environment: keep secrets there, not here.

[server]
# Machine-readable name, reported to clients (and the name client-config gives the server).
name = "{name}"
# title = "My tools"
# Tells the model what this server is for.
# instructions = "..."

[http]
# Loopback only until [auth] is configured.
listen = "127.0.0.1:8080"
path = "/mcp"

[logging]
# Logs go to stderr (never stdout): "info", or e.g. "portcullis_server=debug,info".
level = "info"

[limits]
# Hard ceiling for one tool call, in seconds; [tools.NAME] and [packs.NAME] override it.
tool_timeout_secs = 30
# per_principal = { per_minute = 600 }   # HTTP requests per authenticated principal

# Authentication, required before listening beyond loopback. `portcullis keys new --name
# NAME --scope files:read` prints a key and its entry:
# [auth]
# resource = "https://mcp.example.com/mcp"
# [[auth.api_keys]]
# name = "ci-bot"
# sha256 = "${CI_BOT_KEY_SHA256}"
# scopes = ["files:read"]
"#;

const FILES: &str = r#"# -----------------------------------------------------------------------------
# files: a directory served read-only (list_directory, read_file, search_files, file_info),
# also readable as resources file:///project/PATH. .env*, .git/, *.pem, *.key and id_* are
# always refused.
# -----------------------------------------------------------------------------
[[files]]
name = "project"
path = "."
# writable = true                # adds write_file and edit_file (dry run, then confirm)
# deny = ["secrets/", "*.sqlite"] # refused on top of the built-in patterns
# max_read_bytes = 1048576
# watch = "auto"                 # tell subscribers when files change
"#;

const PROMPTS: &str = r#"# -----------------------------------------------------------------------------
# prompts: minijinja templates with declared arguments.
# -----------------------------------------------------------------------------
[[prompts]]
name = "summarize"
description = "Summarize a text for a given audience."
template = """
Summarize the following for {{ audience | default("a general reader") }}:

{{ text }}
"""
# template_file = "prompts/summarize.md.j2"   # instead of `template`

[[prompts.arguments]]
name = "text"
description = "The text to summarize."
required = true

[[prompts.arguments]]
name = "audience"
description = "Who the summary is for."
"#;

const SQL: &str = r#"# -----------------------------------------------------------------------------
# sql: a database, read-only by default (SQLite, PostgreSQL, MySQL/MariaDB). A database that
# is down does not stop the server: its tools say it is unavailable until it is back.
# `portcullis check --connect` opens it and prepares every statement below.
# -----------------------------------------------------------------------------
[[sql]]
name = "db"
# SQLite relative to this file, or "postgres://reader:${DB_PASSWORD}@db.internal:5432/app",
# "mysql://reader:${DB_PASSWORD}@db.internal:3306/app".
url = "sqlite://app.db"
# A starter database: `app.sql` (written next to this file) creates app.db on first use,
# with a small `orders` table. Point `url` at your own database and drop `seed`.
seed = "app.sql"
read_only = true
statement_timeout_secs = 10
max_rows = 1000
# Opt-in tools: one read-only SELECT (checked by a SQL parser), and schema lookups.
query_tool = "query"
schema_tool = "list_tables"
describe_tool = "describe_table"

# A statement as a tool; parameters are bound (`?` on SQLite and MySQL, `$1` on PostgreSQL).
[[sql.statements]]
name = "recent_orders"
description = "The most recent orders, newest first."
sql = "SELECT id, customer, total, created_at FROM orders ORDER BY created_at DESC LIMIT ?"
[[sql.statements.params]]
name = "limit"
type = "integer"
description = "How many orders."
min = 1
max = 100
default = 10
"#;

/// The starter database's seed (`init --packs sql` writes it as `app.sql`).
const SQL_SEED: &str = "-- The starter database of the `db` source (portcullis init): run once to create app.db.\n\
CREATE TABLE orders (\n\
    id INTEGER PRIMARY KEY,\n\
    customer TEXT NOT NULL,\n\
    total REAL NOT NULL,\n\
    created_at TEXT NOT NULL\n\
);\n\
INSERT INTO orders (customer, total, created_at) VALUES\n\
    ('Ada', 120.50, '2026-11-30T09:12:00Z'),\n\
    ('Grace', 75.00, '2026-12-01T14:03:00Z'),\n\
    ('Linus', 19.99, '2026-12-02T17:45:00Z');\n";

const API: &str = r#"# -----------------------------------------------------------------------------
# api: tools over an HTTP API. Typed parameters become the path, query and body; every
# request passes the SSRF guard (only the base URL's host, no private addresses unless
# allow_private_addresses). `portcullis import openapi FILE` writes these from OpenAPI 3.
# -----------------------------------------------------------------------------
[[api]]
name = "service"
base_url = "${SERVICE_URL:-https://api.example.com}"
# headers = { Authorization = "Bearer ${SERVICE_TOKEN}" }   # never logged
timeout_secs = 10
# allow_private_addresses = true   # for a service on your own network

[[api.tools]]
name = "get_item"
description = "Fetch one item by id."
method = "GET"
path = "/items/{id}"

[[api.tools.params]]
name = "id"
type = "integer"
min = 1
description = "The item's id."
"#;

const COMMAND: &str = r#"# -----------------------------------------------------------------------------
# command: an allowlisted program as a tool, run without a shell in a files root, with a
# clean environment, a timeout and limits. Each parameter is one argument.
# -----------------------------------------------------------------------------
[[commands]]
name = "count_lines"
description = "Count the lines of one file of the project."
root = "project"
argv = ["wc", "-l", "--", "{file}"]
search_path = ["/usr/bin", "/bin"]
read_only = true
timeout_secs = 10

[[commands.params]]
name = "file"
type = "path"
description = "The file, relative to the project root."
"#;

const NOTES: &str = r#"# -----------------------------------------------------------------------------
# notes: markdown files as resources note://SLUG, watched for changes (subscribers are told).
# -----------------------------------------------------------------------------
[[notes]]
name = "notes"
path = "."
# writable = true   # adds write_note and delete_note
# watch = "poll"    # for network mounts and containers where OS events do not arrive
"#;

const SKILLS: &str = r#"# -----------------------------------------------------------------------------
# skills: agent skills (a folder with SKILL.md and its files each, e.g. review/SKILL.md with
# `name: review` and a `description` in its front matter), served as the Skills extension
# (skills/list, skills/get) with every file a skill:// resource and its SHA-256 digest.
# -----------------------------------------------------------------------------
[[skills]]
name = "skills"
path = "."
# required_scopes = ["team"]   # who may list and read them (needs [auth])
"#;

const UPSTREAMS: &str = r#"# -----------------------------------------------------------------------------
# upstreams: MCP servers you already have, behind this server's keys, limits and audit.
# Their tools appear as py__NAME. What each offers is pinned in portcullis.lock on first
# contact; a changed definition is withheld until `portcullis upstreams diff` / `pin`.
# -----------------------------------------------------------------------------
[[upstreams]]
name = "py"
command = ["python3", "server.py"]   # a stdio server (no shell); or:
# url = "http://127.0.0.1:9000/mcp"  # a Streamable HTTP server
# allow_private_addresses = true     # needed for a url on this machine or a private network
# env = { API_TOKEN = "${PY_TOKEN}" } # the only environment a stdio server gets
"#;

const RESOURCES: &str = r#"# -----------------------------------------------------------------------------
# resources: static text, and templates whose variables are typed and checked.
# -----------------------------------------------------------------------------
[[resources]]
uri = "config://about"
name = "about"
description = "What this server is for."
text = "Describe your server here; clients can read it as config://about."
# file = "ABOUT.md"   # instead of `text`

[[resource_templates]]
uri_template = "greeting://{name}"
name = "greeting"
description = "A greeting for someone."
text = "Hello, {{ name }}!"

[[resource_templates.params]]
name = "name"
type = "string"
min = 1
max = 100
"#;

const POLICIES: &str = r#"# -----------------------------------------------------------------------------
# Who may use what (needs [auth]; the local user on stdio has every scope). Per pack, and per
# tool ([tools.NAME] replaces its pack's scopes):
# -----------------------------------------------------------------------------
{packs}
# [tools.NAME]
# required_scopes = ["admin"]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pack_has_a_starter_section() {
        for pack in portcullis_packs::pack_names() {
            assert!(
                section(pack).is_some(),
                "no `init` section for pack `{pack}`"
            );
        }
    }

    #[test]
    fn packs_are_checked_ordered_and_deduplicated() {
        let args = |s: &str| vec![s.to_owned()];
        assert_eq!(choose(&[]).unwrap(), ["files"]);
        assert_eq!(choose(&args("notes,sql,notes")).unwrap(), ["sql", "notes"]);
        assert_eq!(choose(&args("commands")).unwrap(), ["files", "command"]);
        let error = choose(&args("files,nope")).unwrap_err();
        assert!(
            error.starts_with("unknown pack `nope`; packs: files, prompts"),
            "{error}"
        );
    }

    #[test]
    fn server_names_come_from_the_directory() {
        assert_eq!(
            server_name(Path::new("/srv/My Tools_2/portcullis.toml")),
            "my-tools-2"
        );
        assert_eq!(server_name(Path::new("/portcullis.toml")), "portcullis");
    }
}
