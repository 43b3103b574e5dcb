//! Who is calling.

use std::collections::BTreeSet;
use std::fmt;

/// The authenticated identity behind a request, visible to the guard pipeline, logs and
/// tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    id: String,
    scopes: Scopes,
}

/// What a principal may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scopes {
    /// Everything: the local user on stdio, or anyone on a loopback listener without
    /// authentication configured (the operating system is the perimeter there).
    All,
    /// Exactly these scopes.
    Granted(BTreeSet<String>),
}

impl Principal {
    /// The local user (stdio, and loopback HTTP without authentication).
    pub fn local_user() -> Self {
        Self {
            id: "local".to_owned(),
            scopes: Scopes::All,
        }
    }

    /// An authenticated principal with `scopes`.
    pub fn new(id: impl Into<String>, scopes: impl IntoIterator<Item = String>) -> Self {
        Self {
            id: id.into(),
            scopes: Scopes::Granted(scopes.into_iter().collect()),
        }
    }

    /// A stable identifier: `local`, `key:NAME` or `jwt:SUBJECT`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The scopes of `required` this principal lacks (empty when it may proceed).
    pub fn missing<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        match &self.scopes {
            Scopes::All => Vec::new(),
            Scopes::Granted(granted) => required
                .iter()
                .filter(|s| !granted.contains(*s))
                .map(String::as_str)
                .collect(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}
