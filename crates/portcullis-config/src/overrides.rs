//! What the command line sets over the config file (`serve --listen`, `--port`), applied
//! at start and at every reload, so a reload reads the file and keeps them.

use std::net::SocketAddr;

/// Settings given on the command line that win over the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `http.listen` (`serve --listen`).
    pub listen: Option<SocketAddr>,
    /// The port of `http.listen`, its address kept (`serve --port`).
    pub port: Option<u16>,
    /// `reload.watch` on, whatever the file says (`portcullis dev`).
    pub watch: bool,
}

impl Overrides {
    /// Applies the overrides to `config`. When the listen address moves, `auth.resource`
    /// follows if it named that address (a loopback name or the address itself, with its
    /// port): the resource a client is told to use stays the one it reaches.
    pub fn apply(&self, config: &mut crate::Config) {
        if self.watch {
            config.reload.watch = true;
        }
        let before = config.http.listen;
        let mut after = self.listen.unwrap_or(before);
        if let Some(port) = self.port {
            after.set_port(port);
        }
        if after == before {
            return;
        }
        config.http.listen = after;
        // A port chosen at start is not known here: nothing can follow it.
        if after.port() == 0 {
            return;
        }
        let Some(resource) = config.auth.resource.clone() else {
            return;
        };
        let Ok(mut url) = url::Url::parse(&resource) else {
            return;
        };
        let named_before = url.port_or_known_default() == Some(before.port())
            && url.host_str().is_some_and(|host| {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host == "localhost"
                    || host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                        ip == before.ip() || (ip.is_loopback() && before.ip().is_loopback())
                    })
            });
        if !named_before || url.set_port(Some(after.port())).is_err() {
            return;
        }
        if !after.ip().is_unspecified()
            && !after.ip().is_loopback()
            && url
                .host_str()
                .is_some_and(|h| h.trim_matches(['[', ']']) == before.ip().to_string())
        {
            let _ = url.set_ip_host(after.ip());
        }
        let mut moved = url.to_string();
        // `Url` writes a path-less URL with `/`; the resource keeps the operator's spelling.
        if !resource.ends_with('/') && moved.ends_with('/') && url.path() == "/" {
            moved.pop();
        }
        // A JWT audience that was the resource moves with it (it is the same name).
        if let Some(jwt) = config.auth.jwt.as_mut()
            && jwt.audience.as_deref() == Some(resource.as_str())
        {
            jwt.audience = Some(moved.clone());
        }
        config.auth.resource = Some(moved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_follows_the_listen_address_it_named() {
        let config = |resource: &str| {
            crate::parse(&format!(
                "[server]\nname = \"x\"\n[http]\nlisten = \"127.0.0.1:8080\"\n[auth]\nresource = \"{resource}\"\n[[auth.api_keys]]\nname = \"k\"\nsha256 = \"{}\"\n",
                "0".repeat(64)
            ), std::path::Path::new("x.toml"), |_| None)
            .expect("config")
        };
        let port = Overrides {
            port: Some(9000),
            ..Overrides::default()
        };
        let listen = Overrides {
            listen: Some("127.0.0.1:9100".parse().expect("addr")),
            ..Overrides::default()
        };
        for (overrides, resource, listen_after, resource_after) in [
            (
                &port,
                "http://127.0.0.1:8080/mcp",
                "127.0.0.1:9000",
                "http://127.0.0.1:9000/mcp",
            ),
            (
                &port,
                "http://localhost:8080/mcp",
                "127.0.0.1:9000",
                "http://localhost:9000/mcp",
            ),
            (
                &listen,
                "http://localhost:8080/mcp",
                "127.0.0.1:9100",
                "http://localhost:9100/mcp",
            ),
            // A public name is the operator's (a proxy in front): it stays.
            (
                &port,
                "https://mcp.example.com/mcp",
                "127.0.0.1:9000",
                "https://mcp.example.com/mcp",
            ),
            // Another port is not this listener's.
            (
                &port,
                "http://localhost:7000/mcp",
                "127.0.0.1:9000",
                "http://localhost:7000/mcp",
            ),
        ] {
            let mut config = config(resource);
            overrides.apply(&mut config);
            assert_eq!(config.http.listen.to_string(), listen_after, "{resource}");
            assert_eq!(
                config.auth.resource.as_deref(),
                Some(resource_after),
                "{resource}"
            );
        }
        // Port 0 is chosen at start: the resource cannot follow it.
        let mut zero = config("http://127.0.0.1:8080/mcp");
        Overrides {
            port: Some(0),
            ..Overrides::default()
        }
        .apply(&mut zero);
        assert_eq!(
            zero.auth.resource.as_deref(),
            Some("http://127.0.0.1:8080/mcp")
        );
        let mut unchanged = config("http://127.0.0.1:8080/mcp");
        Overrides::default().apply(&mut unchanged);
        assert_eq!(unchanged.http.listen.to_string(), "127.0.0.1:8080");
    }
}
