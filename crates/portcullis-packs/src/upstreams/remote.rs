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
