//! The outbound guard against server-side request forgery, applied to every request and every
//! redirect hop of a guarded client:
//!
//! - the URL must use the scheme of the source's base URL (an https source never sends
//!   anything over plain http), carry no user-info, and name an allowed origin: the base
//!   URL's host and port, or an allowed host on the default port of that scheme (or the
//!   port it names). Hosts are compared in their WHATWG-normalised form, so `2130706433`,
//!   `0x7f000001` and `127.1` are all `127.0.0.1`, and ports explicitly, so `host:80` does
//!   not open every port;
//! - the host is resolved, every address that is not public (loopback, private, unique-local,
//!   link-local with the cloud metadata addresses, CGNAT, multicast, unspecified, broadcast,
//!   reserved, documentation, and IPv4 embedded in IPv6) is dropped unless the policy allows
//!   it, and the connection goes to an address that was checked: the resolver hands reqwest
//!   the addresses, so there is no second lookup to rebind;
//! - an IP literal in the URL is checked the same way before anything is sent;
//! - a redirect is followed only to an allowed origin, after the same checks, at most a few
//!   times, and never to another origin when the source sends configured headers (they
//!   would follow it); anything else ends the request with a [`Refusal`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;

/// Why the guard refused a destination. The message is safe to show: it names the host the
/// caller asked for, never an address it resolved to.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// Not http or https.
    #[error("only http and https URLs are allowed, not `{0}:`")]
    Scheme(String),
    /// Another scheme than the source's (`http:` for an https source).
    #[error("this source uses `{expected}:`; `{got}:` URLs are refused")]
    SchemeChange {
        /// The source's scheme.
        expected: String,
        /// The URL's.
        got: String,
    },
    /// A redirect to another origin from a source that sends configured headers.
    #[error(
        "the server redirected to another origin (`{0}`), which would receive this source's configured headers"
    )]
    CrossOrigin(String),
    /// `user:password@` in the URL.
    #[error("URLs with user-info (`name@host`) are not allowed")]
    UserInfo,
    /// The URL has no host.
    #[error("the URL has no host")]
    NoHost,
    /// The host is not on the source's allow-list.
    #[error("host `{0}` is not on this source's allowed hosts")]
    Host(String),
    /// The host is, or resolves only to, addresses the policy does not allow.
    #[error(
        "host `{0}` is a private, loopback, link-local or otherwise non-public address, which this source may not reach (its operator can allow that with `allow_private_addresses` on the source)"
    )]
    Address(String),
    /// The host did not resolve.
    #[error("host `{0}` could not be resolved")]
    Unresolved(String),
    /// A redirect pointed somewhere the guard refuses.
    #[error("the server redirected to a place this source may not reach: {0}")]
    Redirect(Box<Refusal>),
    /// Too many redirects.
    #[error("the server redirected more than {0} times")]
    TooManyRedirects(usize),
}

/// Which non-public addresses a source may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateAllowance {
    /// None (the default).
    None,
    /// All of them (an internal service).
    All,
    /// Only these networks.
    Networks(Vec<IpNet>),
}

/// Where a guarded client may go.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    /// The source's scheme: every URL must use it.
    scheme: String,
    /// Allowed origins: normalised host and port.
    origins: Vec<(String, u16)>,
    private: PrivateAllowance,
    /// Refuse redirects to another origin (the source sends configured headers).
    same_origin_redirects: bool,
}

/// A host as the WHATWG URL parser normalises it (lowercase; IPv4 in dotted decimal
/// whatever its spelling; IPv6 in brackets) and its port: the one given, else the default
/// of `scheme`.
fn origin(scheme: &str, host: &str) -> Option<(String, u16)> {
    let url = Url::parse(&format!("{scheme}://{host}/")).ok()?;
    Some((url.host_str()?.to_owned(), url.port_or_known_default()?))
}

impl AddressPolicy {
    /// A policy for a source at `base`: its own origin, the allowed `hosts` (names or
    /// addresses, optionally with `:port`; without one, the default port of `base`'s
    /// scheme), and the non-public addresses of `private`. Hosts that do not parse are
    /// ignored (config validation reports them).
    pub fn new(base: &Url, hosts: &[String], private: PrivateAllowance) -> Self {
        let scheme = base.scheme().to_owned();
        let mut origins: Vec<(String, u16)> = base
            .host_str()
            .zip(base.port_or_known_default())
            .map(|(h, p)| (h.to_owned(), p))
            .into_iter()
            .collect();
        origins.extend(hosts.iter().filter_map(|h| origin(&scheme, h)));
        Self {
            scheme,
            origins,
            private,
            same_origin_redirects: false,
        }
    }

    /// Refuse redirects that leave the origin they came from: for sources whose configured
    /// headers (credentials) would otherwise be sent to the new origin.
    #[must_use]
    pub fn same_origin_redirects(mut self, yes: bool) -> Self {
        self.same_origin_redirects = yes;
        self
    }

    /// Checks a URL before a request or a redirect is sent.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme(url.scheme().to_owned()));
        }
        if url.scheme() != self.scheme {
            return Err(Refusal::SchemeChange {
                expected: self.scheme.clone(),
                got: url.scheme().to_owned(),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::UserInfo);
        }
        let host = url.host_str().ok_or(Refusal::NoHost)?;
        let port = url.port_or_known_default().ok_or(Refusal::NoHost)?;
        let listed = self.origins.iter().any(|(h, p)| h == host && *p == port);
        if !listed {
            return Err(Refusal::Host(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            }));
        }
        // An IP literal never reaches the resolver: check it here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.allows(ip)
        {
            return Err(Refusal::Address(host.to_owned()));
        }
        Ok(())
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if is_public(ip) {
            return true;
        }
        match &self.private {
            PrivateAllowance::None => false,
            PrivateAllowance::All => true,
            PrivateAllowance::Networks(networks) => {
                let ip = canonical(ip);
                networks.iter().any(|n| n.contains(&ip))
            }
        }
    }
}

/// An IPv4 address embedded in IPv6 (mapped, compatible, NAT64, 6to4) as IPv4; anything
/// else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // IPv4-compatible (::a.b.c.d, deprecated), except :: and ::1.
    if s[..6].iter().all(|&x| x == 0) && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail());
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return Some(tail());
    }
    // 6to4 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Whether `ip` is a public, globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, the cloud metadata address among them
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || ip.is_documentation()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7, fd00:ec2::254 among them
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation 2001:db8::/32
        || (first == 0x2001 && ip.segments()[1] == 0) // Teredo 2001::/32
        || first == 0x0100) // discard-only 100::/64
}

/// The resolver of a guarded client: resolves, drops every address the policy refuses, and
/// hands reqwest only checked addresses (so the connection cannot go anywhere else).
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Box::new(Refusal::Unresolved(host.clone())) as BoxedError)?
                .collect();
            if found.is_empty() {
                return Err(Box::new(Refusal::Unresolved(host)) as BoxedError);
            }
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| policy.allows(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Refusal::Address(host)) as BoxedError);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

type BoxedError = Box<dyn std::error::Error + Send + Sync>;

/// The redirect policy of a guarded client: every hop is checked like the first request.
pub fn redirect_policy(policy: Arc<AddressPolicy>, max: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max {
            return attempt.error(Refusal::TooManyRedirects(max));
        }
        if let Err(refusal) = policy.check_url(attempt.url()) {
            return attempt.error(Refusal::Redirect(Box::new(refusal)));
        }
        let origin_of = |url: &Url| {
            (
                url.host_str().map(str::to_owned),
                url.port_or_known_default(),
            )
        };
        if policy.same_origin_redirects
            && attempt
                .previous()
                .last()
                .is_some_and(|from| origin_of(from) != origin_of(attempt.url()))
        {
            let to = attempt.url().host_str().unwrap_or_default().to_owned();
            return attempt.error(Refusal::CrossOrigin(to));
        }
        attempt.follow()
    })
}

/// The guard's refusal inside a reqwest error, if that is why the request failed.
pub fn refusal_of(error: &reqwest::Error) -> Option<&Refusal> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base: &str, hosts: &[&str], private: PrivateAllowance) -> AddressPolicy {
        AddressPolicy::new(
            &Url::parse(base).expect("base"),
            &hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
            private,
        )
    }

    #[test]
    fn non_public_addresses_are_recognised_in_every_spelling() {
        for ip in [
            "127.0.0.1",
            "127.0.0.2",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().expect(ip);
            assert!(!is_public(ip), "{ip} must not count as public");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = ip.parse().expect(ip);
            assert!(is_public(ip), "{ip} is public");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_userinfo_host_and_literal_address() {
        let guard = policy(
            "https://api.example.com/v1",
            &["127.0.0.1", "cdn.example.com:8443"],
            PrivateAllowance::None,
        );
        let check = |url: &str| guard.check_url(&Url::parse(url).expect(url));
        assert!(check("https://api.example.com/x").is_ok());
        assert!(check("https://api.example.com:443/x").is_ok());
        assert!(check("https://cdn.example.com:8443/x").is_ok());
        // Ports are explicit: the default one, or the one listed.
        assert!(matches!(
            check("https://api.example.com:5432/"),
            Err(Refusal::Host(_))
        ));
        assert!(matches!(
            check("https://cdn.example.com/"),
            Err(Refusal::Host(_))
        ));
        // Never down to plain http.
        assert!(matches!(
            check("http://api.example.com/x"),
            Err(Refusal::SchemeChange { .. })
        ));
        assert!(matches!(
            check("file:///etc/passwd"),
            Err(Refusal::Scheme(_))
        ));
        assert!(matches!(
            check("gopher://api.example.com/"),
            Err(Refusal::Scheme(_))
        ));
        assert!(matches!(
            check("https://api.example.com@127.0.0.1/"),
            Err(Refusal::UserInfo)
        ));
        assert!(matches!(
            check("https://api.example.com.evil.test/"),
            Err(Refusal::Host(_))
        ));
        assert!(matches!(check("https://API.EXAMPLE.COM/"), Ok(())));
        // Listed, but a loopback literal in any spelling: refused by address.
        for literal in [
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://127.1/",
        ] {
            assert!(
                matches!(check(literal), Err(Refusal::Address(_))),
                "{literal}"
            );
        }
        let internal = policy(
            "http://127.0.0.1:8080/",
            &["127.0.0.1:80"],
            PrivateAllowance::Networks(vec!["127.0.0.1/32".parse().expect("net")]),
        );
        let check = |url: &str| internal.check_url(&Url::parse(url).expect(url));
        assert!(check("http://127.0.0.1:8080/").is_ok());
        assert!(check("http://127.0.0.1/").is_ok());
        // `host:80` is port 80, not every port.
        assert!(matches!(
            check("http://127.0.0.1:5432/"),
            Err(Refusal::Host(_))
        ));
        assert!(matches!(
            check("http://127.0.0.1:22/"),
            Err(Refusal::Host(_))
        ));
        assert!(!internal.allows("127.0.0.2".parse().expect("ip")));
        assert!(!internal.allows("169.254.169.254".parse().expect("ip")));
    }
}
