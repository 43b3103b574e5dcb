//! Denied path patterns: built-in secrets (`.env*`, `.git/`, `*.pem`, `*.key`, `id_*`) plus
//! the root's own `deny` list.

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
    pub(crate) fn new(extra: &[String]) -> Result<Self, String> {
        let mut components = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for pattern in DEFAULT_DENY
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
        {
            let trimmed = pattern.trim_end_matches('/').trim_start_matches('/');
            if trimmed.is_empty() {
                return Err(format!("deny pattern `{pattern}` is empty"));
            }
            let compile = |p: &str| -> Result<Glob, String> {
                GlobBuilder::new(p)
                    .literal_separator(true)
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
        let deny = DenyList::new(&["secrets/*.json".to_owned(), "*.sqlite".to_owned()]).unwrap();
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
    fn bad_patterns_are_reported() {
        assert!(
            DenyList::new(&["a[".to_owned()])
                .unwrap_err()
                .contains("`a[` is not a valid glob")
        );
        assert!(
            DenyList::new(&["/".to_owned()])
                .unwrap_err()
                .contains("is empty")
        );
    }
}
