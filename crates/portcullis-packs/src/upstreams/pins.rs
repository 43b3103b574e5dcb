//! Pinning: what each upstream advertised when an operator accepted it, one digest per item,
//! in the lock file (`portcullis.lock`, JSON), and the verdict on what it advertises now.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of item an upstream offers, as the lock file names them.
pub const KINDS: [Kind; 4] = [Kind::Tool, Kind::Prompt, Kind::Resource, Kind::Template];

/// A kind of upstream item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
    Template,
}

impl Kind {
    /// How people call it (`Withheld::kind`, `check`, `diff`).
    pub fn noun(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Prompt => "prompt",
            Self::Resource => "resource",
            Self::Template => "resource template",
        }
    }
}

/// One pinned item: the digest of its definition, and the definition itself (so that `diff`
/// can show what changed, and a server that cannot reach the upstream yet can list it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub sha256: String,
    pub definition: Value,
}

impl Pin {
    /// The pin of `definition` as it is now.
    pub fn of(definition: Value) -> Self {
        Self {
            sha256: digest(&definition),
            definition,
        }
    }
}

/// What is pinned of one upstream, by kind, by the upstream's own name (or URI).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPins {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, Pin>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<String, Pin>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Pin>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_templates: BTreeMap<String, Pin>,
}

impl UpstreamPins {
    pub fn of(&self, kind: Kind) -> &BTreeMap<String, Pin> {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource => &self.resources,
            Kind::Template => &self.resource_templates,
        }
    }

    pub fn of_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, Pin> {
        match kind {
            Kind::Tool => &mut self.tools,
            Kind::Prompt => &mut self.prompts,
            Kind::Resource => &mut self.resources,
            Kind::Template => &mut self.resource_templates,
        }
    }

    pub fn is_empty(&self) -> bool {
        KINDS.iter().all(|&k| self.of(k).is_empty())
    }
}

/// The lock file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamPins>,
}

/// Largest lock file read.
const MAX_LOCK_BYTES: u64 = 16 * 1024 * 1024;

impl LockFile {
    /// Reads the lock file at `path`; a missing file pins nothing.
    pub fn read(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            return Ok(Self {
                version: 1,
                upstreams: BTreeMap::new(),
            });
        }
        let bytes = portcullis_core::operator_file::read(path)
            .map_err(|e| format!("cannot read the lock file {}: {e}", path.display()))?;
        if bytes.len() as u64 > MAX_LOCK_BYTES {
            return Err(format!("the lock file {} is too large", path.display()));
        }
        let lock: Self = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "the lock file {} is not one Portcullis wrote: {e}",
                path.display()
            )
        })?;
        if lock.version != 1 {
            return Err(format!(
                "the lock file {} has version {}; this Portcullis reads version 1",
                path.display(),
                lock.version
            ));
        }
        Ok(lock)
    }

    /// Writes the lock file at `path` whole (a temporary file renamed over it, so a reader
    /// never sees half of it).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        text.push('\n');
        let dir = path.parent().unwrap_or(Path::new("."));
        let failed =
            |e: std::io::Error| format!("cannot write the lock file {}: {e}", path.display());
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(failed)?;
        file.as_file().sync_all().map_err(failed)?;
        file.persist(path).map_err(|e| failed(e.error))?;
        Ok(())
    }
}

/// The SHA-256 of `definition` in canonical form (object keys sorted at every depth, no
/// whitespace): two listings that differ only in key order or spacing pin the same.
pub fn digest(definition: &Value) -> String {
    portcullis_core::digest::canonical_digest(definition)
}

/// An item's definition as pinned: everything the upstream said of it but `_meta` (which
/// carries no instruction to the model and may change per listing).
pub fn definition<T: Serialize>(item: &T) -> Value {
    let mut value = serde_json::to_value(item).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("_meta");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_spacing_do_not_change_a_digest_and_any_byte_of_a_value_does() {
        let a: Value =
            serde_json::from_str(r#"{"name":"greet","inputSchema":{"type":"object","properties":{"n":{"type":"string"}}}}"#)
                .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "inputSchema": {"properties": {"n": {"type": "string"}}, "type": "object"}, "name": "greet" }"#,
        )
        .unwrap();
        let c: Value =
            serde_json::from_str(r#"{"name":"greet ","inputSchema":{"type":"object","properties":{"n":{"type":"string"}}}}"#)
                .unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the test writes foreign lock files"
    )]
    fn a_lock_file_round_trips_and_a_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.lock");
        let mut lock = LockFile::read(&path).unwrap();
        assert!(lock.upstreams.is_empty());
        lock.upstreams
            .entry("py".to_owned())
            .or_default()
            .tools
            .insert(
                "greet".to_owned(),
                Pin::of(serde_json::json!({"name": "greet"})),
            );
        lock.write(&path).unwrap();
        assert_eq!(LockFile::read(&path).unwrap(), lock);
        std::fs::write(&path, "{\"version\": 2}").unwrap();
        let error = LockFile::read(&path).unwrap_err();
        assert!(error.contains("version 2"), "{error}");
        std::fs::write(&path, "not json").unwrap();
        assert!(
            LockFile::read(&path)
                .unwrap_err()
                .contains("not one Portcullis wrote")
        );
    }
}
