//! Credentials of the auth rows: a fixed test API key and one RS256 JWT signed at start with
//! the public test key of `examples/remote/test-keys` (both worthless outside this benchmark).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

/// The API key every `portcullis-apikey` request carries.
pub const API_KEY: &str = "pcs_bench-key";
const RESOURCE: &str = "http://127.0.0.1/mcp";
const ISSUER: &str = "https://idp.example.test/";
const KID: &str = "test-rsa";

pub struct Auth {
    /// The `[auth]` section appended to the demo config.
    pub config: String,
    /// A token valid for an hour, reused by every `portcullis-jwt` request.
    pub jwt: String,
}

impl Auth {
    pub fn new(root: &Path) -> anyhow::Result<Self> {
        let keys = root.join("examples/remote/test-keys");
        let jwks = keys.join("jwks.json");
        let config = format!(
            r#"
[auth]
resource = "{RESOURCE}"

[[auth.api_keys]]
name = "bench"
sha256 = "{hash}"
scopes = []

[auth.jwt]
issuer = "{ISSUER}"
jwks_file = {jwks}
"#,
            hash = sha256_hex(API_KEY),
            jwks = serde_json::to_string(&jwks.to_string_lossy())?,
        );
        let pem_path = keys.join("rsa-private.pem");
        let pem =
            std::fs::read(&pem_path).with_context(|| format!("read {}", pem_path.display()))?;
        let key = EncodingKey::from_rsa_pem(&pem).context("parse the RSA test key")?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.to_owned());
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "aud": RESOURCE,
            "sub": "bench",
            "iat": now,
            "exp": now + 3600,
        });
        let jwt = jsonwebtoken::encode(&header, &claims, &key).context("sign the bench JWT")?;
        Ok(Self { config, jwt })
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_the_example_keys() {
        // examples/remote/portcullis.toml: the reader key and its hash.
        assert_eq!(
            sha256_hex("pcs_example-reader-key-do-not-use-in-production"),
            "13f9a1b96942c046d77e9fd1c90a4d537c77a008e3c18d64e0f2082fcdabef2c"
        );
    }
}
