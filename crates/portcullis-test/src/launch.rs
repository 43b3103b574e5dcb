//! Starting a server process and reading what it says, shared by the tests
//! ([`crate::HttpServer`]) and the benchmark (`cargo xtask bench`): the stderr drain (a
//! thread, so a full pipe never blocks the server), the `listening` line that carries the
//! address, and what the server wrote (kept in full, or only its last lines).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The address in a server's start-up line: Portcullis's JSON log line
/// `{"fields":{"message":"listening","addr":…}}`, or `{"listening":…}` (the benchmark's
/// other servers).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if let Some(addr) = value.get("listening") {
        return addr.as_str()?.parse().ok();
    }
    let fields = value.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

/// What a server wrote on one stream: its lines (all of them, or the last `keep`), and how
/// many lines and bytes in all.
#[derive(Debug)]
pub struct Output {
    kept: Mutex<VecDeque<String>>,
    keep: usize,
    lines: AtomicU64,
    bytes: AtomicU64,
}

impl Output {
    /// Keeps every line (`usize::MAX`) or only the last `keep`.
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            kept: Mutex::new(VecDeque::new()),
            keep,
            lines: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// Records one line (without its newline) of `bytes` bytes as read.
    pub fn push(&self, line: String, bytes: usize) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == self.keep {
            kept.pop_front();
        }
        kept.push_back(line);
    }

    /// The lines kept so far.
    pub fn lines(&self) -> Vec<String> {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Lines and bytes written so far (all of them, kept or not).
    pub fn volume(&self) -> (u64, u64) {
        (
            self.lines.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Reads `stream` line by line on a thread until it ends: each line goes to `output`, then
/// to `each` (say, a channel a test waits on). The first line that carries the listening
/// address also sends it on the returned channel, which closes without one when the stream
/// ends first (the server exited).
pub fn drain(
    stream: impl Read + Send + 'static,
    output: Arc<Output>,
    mut each: impl FnMut(&str) + Send + 'static,
) -> std::sync::mpsc::Receiver<SocketAddr> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut addr_tx = Some(addr_tx);
        let mut raw = Vec::new();
        while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
            output.push(line.clone(), raw.len());
            // The line is handed on before the address is told: whoever waits for the
            // address finds the line already there.
            each(&line);
            if addr_tx.is_some()
                && let Some(addr) = listening_addr(&line)
                && let Some(tx) = addr_tx.take()
            {
                let _ = tx.send(addr);
            }
            raw.clear();
        }
    });
    addr_rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_of_every_server() {
        let portcullis = r#"{"timestamp":"x","level":"INFO","fields":{"message":"listening","transport":"http","addr":"127.0.0.1:4321","path":"/mcp"}}"#;
        let cases = [
            (portcullis, Some("127.0.0.1:4321")),
            (r#"{"listening":"127.0.0.1:99"}"#, Some("127.0.0.1:99")),
            (r#"{"fields":{"message":"tool call"}}"#, None),
            (
                r#"{"fields":{"message":"listening","addr":"nonsense"}}"#,
                None,
            ),
            ("INFO:     Started server process", None),
        ];
        for (line, addr) in cases {
            assert_eq!(
                listening_addr(line),
                addr.map(|a| a.parse().unwrap()),
                "{line}"
            );
        }
    }

    #[test]
    fn a_drain_keeps_what_it_is_told_counts_everything_and_finds_the_address() {
        let text = "one\n{\"listening\":\"127.0.0.1:7\"}\nthree\nfour\n";
        let output = Output::new(2);
        let (tx, rx) = std::sync::mpsc::channel();
        let addr = drain(std::io::Cursor::new(text), Arc::clone(&output), move |l| {
            let _ = tx.send(l.to_owned());
        });
        assert_eq!(addr.recv().unwrap(), "127.0.0.1:7".parse().unwrap());
        let seen: Vec<String> = rx.iter().collect();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(output.lines(), ["three", "four"]);
        assert_eq!(output.volume(), (4, text.len() as u64));
    }

    #[test]
    fn a_stream_that_ends_without_the_line_closes_the_channel() {
        let addr = drain(std::io::Cursor::new("crashed\n"), Output::new(10), |_| {});
        assert!(addr.recv().is_err());
    }
}
