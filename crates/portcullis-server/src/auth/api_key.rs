//! API keys: 256-bit random tokens, stored as SHA-256 hashes, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Principal;

/// Prefix of generated keys, so leaked keys are easy to find with secret scanners.
pub const KEY_PREFIX: &str = "pcs_";

struct Key {
    name: String,
    hash: [u8; 32],
    scopes: Vec<String>,
}

impl Key {
    /// The principal this key authenticates, bound to the key itself (its hash), so a key
    /// rotated under the same name is another credential.
    fn principal(&self) -> Principal {
        Principal::api_key(&self.name, self.scopes.iter().cloned()).with_credential(self.hash)
    }
}

/// The configured keys.
pub(crate) struct ApiKeys {
    keys: Vec<Key>,
}

impl ApiKeys {
    pub(crate) fn new(config: &[portcullis_config::ApiKeyConfig]) -> Self {
        let keys = config
            .iter()
            .filter_map(|k| {
                let bytes = decode_hex(&k.sha256)?;
                Some(Key {
                    name: k.name.clone(),
                    hash: bytes,
                    scopes: k.scopes.clone(),
                })
            })
            .collect();
        Self { keys }
    }

    /// `principal` as this config sees its key: the same key (name and hash) with the
    /// scopes it has now, or `None` when the key is gone or was rotated.
    pub(crate) fn current(&self, principal: &Principal) -> Option<Principal> {
        let name = principal.id().strip_prefix("key:")?;
        self.keys
            .iter()
            .find(|k| k.name == name && principal.credential() == Some(&k.hash))
            .map(Key::principal)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal of `presented`, comparing against every key without an early exit so
    /// timing reveals neither which key matched nor how much of a hash did.
    pub(crate) fn authenticate(&self, presented: &str) -> Option<Principal> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&Key> = None;
        for key in &self.keys {
            if bool::from(key.hash.ct_eq(&hash)) {
                found = Some(key);
            }
        }
        found.map(Key::principal)
    }
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A new random key and the lowercase hex SHA-256 to put in the config.
pub fn generate_key() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let key = format!("{KEY_PREFIX}{}", hex(&bytes));
    let hash = hex(&Sha256::digest(key.as_bytes()));
    Ok((key, hash))
}

/// Lowercase hex of the SHA-256 of `key`.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_authenticate_and_others_do_not() {
        let (key, hash) = generate_key().unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64);
        let config = portcullis_config::ApiKeyConfig {
            name: "ci".into(),
            sha256: hash.clone(),
            scopes: vec!["files:read".into()],
        };
        let keys = ApiKeys::new(&[config]);
        let principal = keys
            .authenticate(&key)
            .expect("the generated key is accepted");
        assert_eq!(principal.id(), "key:ci");
        assert!(principal.missing(&["files:read".to_owned()]).is_empty());
        assert_eq!(
            principal.missing(&["files:write".to_owned()]),
            ["files:write"]
        );
        assert!(keys.authenticate(&format!("{key}x")).is_none());
        assert!(
            keys.authenticate(&hash).is_none(),
            "the hash itself is not a key"
        );
        assert!(keys.authenticate("").is_none());
    }
}
