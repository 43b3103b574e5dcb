//! The client's address behind reverse proxies: the one place that decides it.
//!
//! `X-Forwarded-For` is believed only from a connection whose peer is a trusted proxy, and
//! then only as far as the chain of trusted proxies reaches: walking the header from the
//! right, the first address that is not itself a trusted proxy is the client. Everything to
//! its left was written by the client (or by proxies nobody vouches for) and is ignored.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks of `http.trusted_proxies`.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses the configured CIDRs (validated with the config; `Err` names a bad one).
    pub(crate) fn new(networks: &[String]) -> Result<Self, crate::SetupError> {
        networks
            .iter()
            .map(|n| {
                n.parse::<IpNet>().map_err(|_| {
                    crate::SetupError::setting(
                        "http.trusted_proxies",
                        format_args!("`{n}` is not a network in CIDR notation"),
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    pub(crate) fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`.
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        // Several `X-Forwarded-For` headers form one list, in order.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.to_str().map_or(vec![""], |v| v.split(',').collect()))
            .collect();
        for hop in hops.iter().rev() {
            // A hop that is not an address ends the walk: what lies left of it cannot be
            // told apart from the client's own text, so the last trusted hop is the answer.
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// One entry of `X-Forwarded-For`: `203.0.113.7`, `2001:db8::1`, or either with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(trusted: &[&str], peer: &str, forwarded: &[&str], expect: &str) {
        let trusted: Vec<String> = trusted.iter().map(|s| (*s).to_owned()).collect();
        let proxies = TrustedProxies::new(&trusted).expect("networks");
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().expect("header value"));
        }
        let got = proxies.client_ip(peer.parse().expect("peer"), &headers);
        assert_eq!(got.to_string(), expect, "{trusted:?} {peer} {forwarded:?}");
    }

    #[test]
    fn the_header_counts_only_from_trusted_proxies() {
        let lan = &["10.0.0.0/8", "127.0.0.1/32"];
        // No trusted proxies (the default), or an untrusted peer: the header is ignored.
        check(&[], "127.0.0.1", &["203.0.113.7"], "127.0.0.1");
        check(lan, "192.0.2.1", &["203.0.113.7"], "192.0.2.1");
        // A trusted proxy: the right-most address that is not a trusted proxy.
        check(lan, "127.0.0.1", &["203.0.113.7"], "203.0.113.7");
        check(
            lan,
            "10.1.2.3",
            &["198.51.100.9, 203.0.113.7, 10.9.9.9"],
            "203.0.113.7",
        );
        check(
            lan,
            "10.1.2.3",
            &["198.51.100.9", "203.0.113.7, 10.9.9.9"],
            "203.0.113.7",
        );
        // Forged entries left of the real client are not believed.
        check(lan, "10.1.2.3", &["10.0.0.1, 192.0.2.66"], "192.0.2.66");
        // Ports, IPv6, IPv4-mapped peers.
        check(
            lan,
            "::ffff:127.0.0.1",
            &["[2001:db8::1]:4711"],
            "2001:db8::1",
        );
        check(lan, "127.0.0.1", &["203.0.113.7:80"], "203.0.113.7");
        // Garbage ends the walk at the last trusted hop; only trusted hops: the left-most.
        check(
            lan,
            "127.0.0.1",
            &["203.0.113.7, nonsense, 10.0.0.5"],
            "10.0.0.5",
        );
        check(lan, "127.0.0.1", &[""], "127.0.0.1");
        check(lan, "127.0.0.1", &[], "127.0.0.1");
        check(lan, "127.0.0.1", &["10.0.0.7, 10.0.0.5"], "10.0.0.7");
    }
}
