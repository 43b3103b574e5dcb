//! `portcullis health`: a container health check that needs no curl in the image. One
//! plain-HTTP GET; exit status 0 on `200`, 1 otherwise; nothing on stdout, the reason for a
//! failure on stderr.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// How long connecting, sending and reading may each take.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to GET (plain http). Without it: `/healthz` on the config's `http.listen`
    /// (an unspecified address such as `0.0.0.0` asked on loopback), else
    /// `http://127.0.0.1:8080/healthz`.
    #[arg(long)]
    url: Option<String>,
    /// Configuration file whose `http.listen` to ask.
    #[arg(long, short, env = "PORTCULLIS_CONFIG")]
    config: Option<std::path::PathBuf>,
}

pub fn run(args: &Args) -> ExitCode {
    let url = match (&args.url, &args.config) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => match url_of(config) {
            Ok(url) => url,
            Err(reason) => {
                eprintln!("portcullis: health check: {reason}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => "http://127.0.0.1:8080/healthz".to_owned(),
    };
    match probe(&url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("portcullis: health check of {url} failed: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// `/healthz` at the config's `http.listen`, asked on loopback when it listens on every
/// address.
fn url_of(config: &std::path::Path) -> Result<String, String> {
    let config = portcullis_config::load(config).map_err(|e| e.to_string())?;
    let mut listen = config.http.listen;
    if listen.port() == 0 {
        return Err(format!(
            "`http.listen` is {listen}: the port is chosen at start, so give --url"
        ));
    }
    if listen.ip().is_unspecified() {
        listen.set_ip(match listen.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(format!("http://{listen}/healthz"))
}

fn probe(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("the URL must start with `http://`")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    if authority.is_empty() || authority.contains('@') {
        return Err("the URL needs a host (and no user-info)".to_owned());
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{authority}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{authority}` has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: portcullis-health\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        match stream.read(&mut buf).map_err(|e| e.to_string())? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default();
    match status_line.split(' ').nth(1) {
        Some("200") if status_line.starts_with("HTTP/1.") => Ok(()),
        _ => Err(format!("answered `{}`", status_line.trim())),
    }
}
