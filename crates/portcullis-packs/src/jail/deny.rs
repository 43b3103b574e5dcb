//! Denied path patterns: built-in secrets (`.env*`, `.git/`, `*.pem`, `*.key`, `id_*`) plus
//! the root's own `deny` list.
//!
//! The built-in patterns ignore letter case: a client can ask for `.ENV` or `server.PEM`,
//! and on a case-insensitive file system (macOS, Windows, some mounts) `.ENV` opens `.env`.
//! A root's own patterns ignore case too unless its config says otherwise.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Patterns refused in every root.
pub const DEFAULT_DENY: &[&str] = &[".env*", ".git/", "*.pem", "*.key", "id_*"];

/// A compiled deny list.
#[derive(Debug)]
pub(crate) struct DenyList {
    /// Patterns without `/`: matched against every component of the path.
    components: GlobSet,
    /// Patterns with an inner `/`: matched against the whole relative path.
    paths: GlobSet,
}

impl DenyList {
    /// The built-in patterns (letter case ignored) and `extra`, whose letter case is
    /// ignored when `extra_ignore_case` is set.
    pub(crate) fn new(extra: &[String], extra_ignore_case: bool) -> Result<Self, String> {
        let mut components = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for (pattern, ignore_case) in DEFAULT_DENY
            .iter()
            .map(|p| (*p, true))
            .chain(extra.iter().map(|p| (p.as_str(), extra_ignore_case)))
        {
            let trimmed = pattern.trim_end_matches('/').trim_start_matches('/');
            if trimmed.is_empty() {
                return Err(format!("deny pattern `{pattern}` is empty"));
            }
            let compile = |p: &str| -> Result<Glob, String> {
                GlobBuilder::new(p)
                    .literal_separator(true)
                    .case_insensitive(ignore_case)
                    .build()
                    .map_err(|e| format!("deny pattern `{pattern}` is not a valid glob: {e}"))
            };
            if trimmed.contains('/') {
                paths.add(compile(trimmed)?);
                paths.add(compile(&format!("{trimmed}/**"))?);
            } else {
                components.add(compile(trimmed)?);
            }
        }
        Ok(Self {
            components: components.build().map_err(|e| e.to_string())?,
            paths: paths.build().map_err(|e| e.to_string())?,
        })
    }

    /// Whether `relative` (slash-separated, relative to the root, already normalised) is
    /// denied.
    pub(crate) fn is_denied(&self, relative: &str) -> bool {
        if relative.is_empty() {
            return false;
        }
        relative
            .split('/')
            .any(|component| self.components.is_match(component))
            || self.paths.is_match(relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_extras() {
        let deny =
            DenyList::new(&["secrets/*.json".to_owned(), "*.sqlite".to_owned()], true).unwrap();
        for denied in [
            ".env",
            ".env.local",
            "app/.env.production",
            ".git",
            ".git/config",
            "sub/.git/HEAD",
            "certs/server.pem",
            "deploy/server.key",
            "home/.ssh/id_rsa",
            "id_ed25519.pub",
            "secrets/prod.json",
            "secrets/prod.json/x",
            "data/app.sqlite",
        ] {
            assert!(deny.is_denied(denied), "{denied} should be denied");
        }
        for allowed in [
            "",
            "README.md",
            "src/env.rs",
            "environment.md",
            "gitignore",
            "keys.md",
            "docs/secrets/prod.json",
            "ids.txt",
        ] {
            assert!(!deny.is_denied(allowed), "{allowed} should be allowed");
        }
    }

    #[test]
    fn letter_case_is_ignored_where_asked() {
        let extra = ["secrets/*.json".to_owned(), "*.sqlite".to_owned()];
        for ignore_case in [true, false] {
            let deny = DenyList::new(&extra, ignore_case).unwrap();
            // The built-in patterns, always.
            for denied in [
                ".ENV",
                ".Env.Local",
                "app/.ENV.production",
                ".GIT",
                "sub/.Git/HEAD",
                "certs/server.PEM",
                "tls.Key",
                "home/.ssh/ID_RSA",
                "Id_Ed25519.pub",
            ] {
                assert!(deny.is_denied(denied), "{denied} should be denied");
            }
            // The root's own patterns, as configured.
            for other_case in ["Secrets/Prod.JSON", "SECRETS/prod.json", "data/App.SQLite"] {
                assert_eq!(deny.is_denied(other_case), ignore_case, "{other_case}");
            }
            for allowed in [
                "Environment.md",
                "src/Env.rs",
                "Keys.md",
                "docs/Secrets/a.json",
            ] {
                assert!(!deny.is_denied(allowed), "{allowed} should be allowed");
            }
        }
    }

    #[test]
    fn bad_patterns_are_reported() {
        assert!(
            DenyList::new(&["a[".to_owned()], true)
                .unwrap_err()
                .contains("`a[` is not a valid glob")
        );
        assert!(
            DenyList::new(&["/".to_owned()], false)
                .unwrap_err()
                .contains("is empty")
        );
    }
}
