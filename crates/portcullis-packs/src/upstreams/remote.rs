//! The HTTP client of a remote upstream: the outbound builder's (TLS, the SSRF guard on
//! every address and redirect), with the upstream's own allowance of private addresses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::Upstream;
use portcullis_core::outbound::{self, AddressPolicy, ClientOptions};
use url::Url;

/// The URL of a remote upstream, checked by its address policy (scheme, user-info, literal
/// addresses), and the policy.
pub(super) fn checked_url(upstream: &Upstream) -> Result<(Url, Arc<AddressPolicy>), String> {
    let url = upstream.url.as_deref().unwrap_or_default();
    let url = Url::parse(url).map_err(|_| format!("`{url}` is not a URL"))?;
    if url.host_str().is_none() {
        return Err("the URL has no host".to_owned());
    }
    let private = crate::api::private_allowance(&upstream.allow_private_addresses)?;
    // Credentials in headers never follow a redirect to another origin.
    let policy = Arc::new(AddressPolicy::new(&url, &[], private).same_origin_redirects(true));
    policy
        .check_url(&url)
        .map_err(|refusal| format!("the URL is refused: {refusal}"))?;
    Ok((url, policy))
}

/// The client rmcp's Streamable HTTP transport speaks through.
pub(super) fn client(upstream: &Upstream, base_dir: &Path) -> Result<reqwest::Client, String> {
    let (_, policy) = checked_url(upstream)?;
    outbound::client(&ClientOptions {
        // A call's own deadline bounds it; this bounds a stream nobody reads any more.
        timeout: Duration::from_secs(3600),
        connect_timeout: Duration::from_secs(upstream.connect_timeout_secs.min(10)),
        max_redirects: 0,
        ca_file: upstream.ca_file.as_ref().map(|f| base_dir.join(f)),
        guard: Some(policy),
        https_only: false,
    })
    .map_err(|e| e.to_string())
}

/// A bearer token and when a connection opened with it is replaced by one with a new
/// token: 30 s before it expires, or halfway through a shorter life.
#[derive(Clone)]
pub(super) struct Token {
    pub(super) value: String,
    pub(super) renew: tokio::time::Instant,
}

/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Asks `oauth`'s token endpoint for a token (client credentials, HTTP Basic), through the
/// outbound guard with the upstream's allowance. The error is for the operator's log: the
/// status and the endpoint's `error` code, never its body otherwise.
pub(super) async fn fetch_token(
    upstream: &Upstream,
    oauth: &portcullis_config::UpstreamOAuth,
    base_dir: &Path,
) -> Result<Token, String> {
    let url =
        Url::parse(&oauth.token_url).map_err(|_| "`oauth.token_url` is not a URL".to_owned())?;
    let private = crate::api::private_allowance(&upstream.allow_private_addresses)?;
    let policy = Arc::new(AddressPolicy::new(&url, &[], private).same_origin_redirects(true));
    policy
        .check_url(&url)
        .map_err(|refusal| format!("`oauth.token_url` is refused: {refusal}"))?;
    let timeout = Duration::from_secs(upstream.connect_timeout_secs);
    let client = outbound::client(&ClientOptions {
        timeout,
        connect_timeout: timeout.min(Duration::from_secs(10)),
        max_redirects: 0,
        ca_file: upstream.ca_file.as_ref().map(|f| base_dir.join(f)),
        guard: Some(policy),
        https_only: false,
    })
    .map_err(|e| e.to_string())?;
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &oauth.scope {
            form.append_pair("scope", scope);
        }
        form.finish()
    };
    let response = client
        .post(url)
        .basic_auth(&oauth.client_id, Some(oauth.client_secret.expose()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form)
        .send()
        .await
        .map_err(|e| format!("the token endpoint: {}", outbound::describe(&e)))?;
    let status = response.status();
    let body = outbound::read_capped(response, MAX_TOKEN_RESPONSE)
        .await
        .map_err(|e| format!("the token endpoint: {e}"))?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        let code = answer["error"].as_str().unwrap_or("no error code");
        let code: String = code.chars().take(64).collect();
        return Err(format!("the token endpoint answered {status} ({code})"));
    }
    let value = answer["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint's answer has no access_token")?
        .to_owned();
    // Without `expires_in`, an hour; at least 2 s, so that renewing cannot spin.
    let lifetime = Duration::from_secs(
        answer["expires_in"]
            .as_u64()
            .unwrap_or(3600)
            .clamp(2, 365 * 24 * 3600),
    );
    let margin = Duration::from_secs(30).min(lifetime / 2);
    Ok(Token {
        value,
        renew: tokio::time::Instant::now() + lifetime - margin,
    })
}
