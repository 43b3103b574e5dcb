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
        if revealing() {
            return f.write_str(&digest_of(&self.0));
        }
        f.write_str("<redacted>")
    }
}

thread_local! {
    static REVEALING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `Debug` output is being taken for [`fingerprint_text`] on this thread.
pub(crate) fn revealing() -> bool {
    REVEALING.with(std::cell::Cell::get)
}

/// `sha256:HEX` of a secret value: what a fingerprint shows of it.
pub(crate) fn digest_of(value: &str) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(value.as_bytes()))
}

/// The `Debug` text of `value` with every secret in it (and a SQL source's URL) shown as
/// its SHA-256 instead of `<redacted>`, for a digest that must change when a secret does
/// (the config generation that approvals are bound to). No secret is ever written out.
pub fn fingerprint_text<T: std::fmt::Debug>(value: &T) -> String {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REVEALING.with(|r| r.set(false));
        }
    }
    REVEALING.with(|r| r.set(true));
    let _reset = Reset;
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_sees_a_changed_secret_and_debug_never_shows_one() {
        let a = Secret::from("one".to_owned());
        let b = Secret::from("two".to_owned());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(fingerprint_text(&a), fingerprint_text(&b));
        assert!(
            !fingerprint_text(&a).contains("one"),
            "only a digest of the secret"
        );
        assert_eq!(
            format!("{a:?}"),
            "<redacted>",
            "revealing ends with the fingerprint"
        );
    }
}
