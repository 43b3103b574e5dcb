//! Secret values from config (keys, tokens): usable by the code that needs them, never shown
//! by `Debug` or in error messages.

use schemars::JsonSchema;
use serde::Deserialize;

/// A secret string, usually `${ENV}`-expanded from the environment. `Debug` prints
/// `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
