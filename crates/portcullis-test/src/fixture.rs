//! Temporary file trees and configs for tests.

use std::path::{Path, PathBuf};

/// A temporary directory holding a config file, a read-only root `project`, a writable root
/// `scratch`, and a file outside both (`outside/secret.txt`) that must never be reachable.
pub struct Fixture {
    dir: tempfile::TempDir,
}

/// Read limit of the `project` root: `big.txt` is larger.
pub const PROJECT_MAX_READ: u64 = 4096;

impl Fixture {
    /// Builds the tree. `extra_config` is appended to the generated config (for extra sections).
    pub fn new(extra_config: &str) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let project = root.join("project");
        for sub in ["src", "docs", ".git", "nested/deeper"] {
            std::fs::create_dir_all(project.join(sub))?;
        }
        std::fs::create_dir_all(root.join("scratch/notes"))?;
        std::fs::create_dir_all(root.join("outside"))?;
        std::fs::write(
            root.join("outside/secret.txt"),
            "TOP SECRET outside the root\n",
        )?;
        std::fs::write(
            project.join("README.md"),
            "# Project\n\nHello from the fixture.\nSecond paragraph line.\n",
        )?;
        std::fs::write(
            project.join("src/main.rs"),
            "fn main() {\n    println!(\"needle in main\");\n}\n",
        )?;
        std::fs::write(
            project.join("src/lib.rs"),
            "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
        )?;
        std::fs::write(
            project.join("docs/guide.md"),
            "# Guide\n\nThe needle is here too.\n",
        )?;
        std::fs::write(project.join("nested/deeper/notes.txt"), "deep text\n")?;
        std::fs::write(project.join("unicode ü 名前.txt"), "héllo wörld 你好\n")?;
        std::fs::write(project.join(".env"), "API_KEY=fixture-secret\n")?;
        std::fs::write(project.join(".env.local"), "API_KEY=fixture-secret-local\n")?;
        std::fs::write(project.join("server.pem"), "fixture pem\n")?;
        std::fs::write(project.join("deploy.key"), "fixture key\n")?;
        std::fs::write(project.join("id_rsa"), "fixture ssh key\n")?;
        std::fs::write(project.join(".git/config"), "[core]\n")?;
        std::fs::write(
            project.join("big.txt"),
            "x".repeat(PROJECT_MAX_READ as usize * 2),
        )?;
        let mut png = vec![
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d,
        ];
        png.extend_from_slice(&[0u8; 64]);
        std::fs::write(project.join("logo.png"), png)?;
        std::fs::write(
            root.join("scratch/notes/todo.md"),
            "- [ ] first\n- [ ] second\n",
        )?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(root.join("outside/secret.txt"), project.join("link-out"))?;
            symlink(root.join("outside"), project.join("dir-out"))?;
            symlink("README.md", project.join("link-in"))?;
            symlink(".env", project.join("link-to-env"))?;
            symlink(
                root.join("outside/secret.txt"),
                root.join("scratch/link-out"),
            )?;
        }
        let config = format!(
            r#"[server]
name = "fixture"
instructions = "test fixture"

[http]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5

[logging]
format = "json"
level = "info"

[limits]
tool_timeout_secs = 10

[[files]]
name = "project"
path = "project"
max_read_bytes = {PROJECT_MAX_READ}
max_search_results = 50

[[files]]
name = "scratch"
path = "scratch"
writable = true

[[prompts]]
name = "greet"
description = "Greets someone"
template = "Hello {{{{ name }}}}{{% if mood %}}, you seem {{{{ mood }}}}{{% endif %}}!"
[[prompts.arguments]]
name = "name"
required = true
[[prompts.arguments]]
name = "mood"

[[resources]]
uri = "config://rules"
name = "rules"
text = "rule one\nrule two\n"
{extra_config}"#
        );
        std::fs::write(root.join("portcullis.toml"), config)?;
        Ok(Self { dir })
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("portcullis.toml")
    }

    /// The fixture's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
