//! The argument fingerprint of a log line: HMAC-SHA-256 of the arguments under a key from
//! config (replicas share it to correlate their logs) or drawn at random for the process.
//! Unkeyed, a short value could be recovered from its hash by trying candidates; keyed, the
//! log reveals only whether two calls had the same arguments.

use hmac::{Hmac, Mac};
use rmcp::model::JsonObject;
use sha2::Sha256;

/// A prepared HMAC key.
#[derive(Clone)]
pub(crate) struct Fingerprint {
    mac: Hmac<Sha256>,
}

impl Fingerprint {
    /// Keyed by `key`, or by 32 random bytes when there is none.
    pub(crate) fn new(key: Option<&str>) -> Self {
        let random;
        let key = match key {
            Some(key) => key.as_bytes(),
            None => {
                let mut bytes = [0u8; 32];
                // Without the system's randomness a fixed key would make fingerprints
                // guessable; the hash of the process id and time is the fallback.
                if getrandom::fill(&mut bytes).is_err() {
                    use sha2::Digest as _;
                    let seed = format!("{}{:?}", std::process::id(), std::time::SystemTime::now());
                    bytes = Sha256::digest(seed.as_bytes()).into();
                }
                random = bytes;
                &random[..]
            }
        };
        Self {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The first 8 bytes of the HMAC of `arguments` (their JSON), in hex.
    pub(crate) fn of(&self, arguments: &JsonObject) -> String {
        let mut mac = self.mac.clone();
        if let Ok(bytes) = serde_json::to_vec(arguments) {
            mac.update(&bytes);
        }
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(16);
        for byte in &digest[..8] {
            use std::fmt::Write as _;
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}
