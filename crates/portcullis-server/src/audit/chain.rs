//! The hash chain of the audit log, and its verification.
//!
//! A record is one JSON object on one line whose last member is `"hash"`. The hash covers
//! the previous record's hash and the record's own text without the `hash` member:
//! `hash = H(prev_hash || "\n" || body)`, where `body` is the line with `,"hash":"…"`
//! removed, and `H` is HMAC-SHA-256 under the configured key (or plain SHA-256 without
//! one). The body also names `prev`, so a record cannot be moved without breaking both its
//! own hash and its successor's link. Nothing is canonicalized: the bytes written are the
//! bytes hashed.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The `prev` of the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_MEMBER: &str = ",\"hash\":\"";

/// How records are hashed: keyed (HMAC-SHA-256) or not.
#[derive(Clone)]
pub struct Hasher {
    key: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.key.is_some() {
            "Hasher(hmac-sha256)"
        } else {
            "Hasher(sha256)"
        })
    }
}

impl Hasher {
    /// Keyed by `key` (HMAC), or plain SHA-256 without one.
    pub fn new(key: Option<&str>) -> Self {
        Self {
            key: key.map(|k| {
                Hmac::<Sha256>::new_from_slice(k.as_bytes()).expect("HMAC takes keys of any length")
            }),
        }
    }

    /// The hash of `body` following `prev`, in lowercase hex.
    pub fn hash(&self, prev: &str, body: &str) -> String {
        let digest: [u8; 32] = match &self.key {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(prev.as_bytes());
                mac.update(b"\n");
                mac.update(body.as_bytes());
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut sha = Sha256::new();
                sha.update(prev.as_bytes());
                sha.update(b"\n");
                sha.update(body.as_bytes());
                sha.finalize().into()
            }
        };
        hex(&digest)
    }

    /// Closes `body` (a JSON object without its final `}`) with its hash; returns the line
    /// (without newline) and the hash.
    pub fn seal(&self, prev: &str, open_body: &str) -> (String, String) {
        let body = format!("{open_body}}}");
        let hash = self.hash(prev, &body);
        let mut line = open_body.to_owned();
        line.push_str(HASH_MEMBER);
        line.push_str(&hash);
        line.push_str("\"}");
        (line, hash)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// What is wrong with a chain: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The file (as given) holding the first bad record.
    pub file: String,
    /// Its line number (1-based).
    pub line: usize,
    /// Why the record does not belong.
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// The end of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEnd {
    /// Records checked.
    pub records: u64,
    /// Sequence number of the last record (0: none).
    pub last_seq: u64,
    /// Hash of the last record (`GENESIS` when none).
    pub last_hash: String,
}

/// Checks records one after another (one chain: one replica).
#[derive(Debug)]
pub struct Verifier {
    hasher: Hasher,
    prev: String,
    seq: u64,
    records: u64,
    /// Accept a first record that continues an earlier chain (older files deleted).
    continuing: bool,
}

impl Verifier {
    /// A verifier expecting the chain to start at the genesis record, unless `continuing`.
    pub fn new(hasher: Hasher, continuing: bool) -> Self {
        Self {
            hasher,
            prev: GENESIS.to_owned(),
            seq: 0,
            records: 0,
            continuing,
        }
    }

    /// Checks the next record's text; on success it becomes the chain's end.
    pub fn next(&mut self, line: &str) -> Result<(), ChainError> {
        let Some(at) = line.rfind(HASH_MEMBER) else {
            return Err(ChainError::NotARecord);
        };
        let hash = line[at + HASH_MEMBER.len()..]
            .strip_suffix("\"}")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(ChainError::CutShort)?;
        let body = format!("{}}}", &line[..at]);
        #[derive(serde::Deserialize)]
        struct Links {
            seq: u64,
            prev: String,
        }
        let links: Links =
            serde_json::from_str(&body).map_err(|e| ChainError::NotJson(e.to_string()))?;
        let first = self.records == 0;
        if first && self.continuing {
            // Older files are gone: take the first record's links on trust.
            self.prev.clone_from(&links.prev);
            self.seq = links.seq.saturating_sub(1);
        }
        if links.seq != self.seq + 1 {
            return Err(if first && links.seq != 1 {
                ChainError::StartsLate { seq: links.seq }
            } else {
                ChainError::OutOfOrder {
                    seq: links.seq,
                    after: self.seq,
                }
            });
        }
        if links.prev != self.prev {
            return Err(ChainError::Unlinked { seq: links.seq });
        }
        if self.hasher.hash(&self.prev, &body) != hash {
            return Err(ChainError::Altered {
                seq: links.seq,
                keyed: self.hasher.key.is_some(),
            });
        }
        self.prev = hash.to_owned();
        self.seq = links.seq;
        self.records += 1;
        Ok(())
    }

    /// Where the chain ends now.
    pub fn end(&self) -> ChainEnd {
        ChainEnd {
            records: self.records,
            last_seq: self.seq,
            last_hash: self.prev.clone(),
        }
    }
}

/// The head file: the last record known to be written, sealed like a record, so that
/// records cut off the end of the chain are noticed.
pub fn head_text(hasher: &Hasher, seq: u64, hash: &str) -> String {
    let body = format!("{{\"head_seq\":{seq},\"head_hash\":\"{hash}\"}}");
    let mac = hasher.hash("head", &body);
    format!("{{\"head_seq\":{seq},\"head_hash\":\"{hash}\",\"mac\":\"{mac}\"}}\n")
}

/// Checks a chain's end against its head file's text: the head must be intact and name a
/// record the chain has (a chain may run past its head: the head is written after the
/// records).
pub fn check_head(
    hasher: &Hasher,
    head: &str,
    end: &ChainEnd,
    hashes: &dyn Fn(u64) -> Option<String>,
) -> Result<(), ChainError> {
    #[derive(serde::Deserialize)]
    struct Head {
        head_seq: u64,
        head_hash: String,
        mac: String,
    }
    let parsed: Head =
        serde_json::from_str(head.trim()).map_err(|e| ChainError::BadHead(e.to_string()))?;
    if head_text(hasher, parsed.head_seq, &parsed.head_hash).trim() != head.trim()
        || parsed.mac.len() != 64
    {
        return Err(ChainError::HeadAltered);
    }
    if parsed.head_seq > end.last_seq {
        return Err(ChainError::CutOff {
            ends_at: end.last_seq,
            written: parsed.head_seq,
        });
    }
    match hashes(parsed.head_seq) {
        Some(hash) if hash == parsed.head_hash => Ok(()),
        Some(_) => Err(ChainError::HeadDiffers {
            seq: parsed.head_seq,
        }),
        None if parsed.head_seq == 0 => Ok(()),
        None => Err(ChainError::HeadMissing {
            seq: parsed.head_seq,
        }),
    }
}

/// Why a record or a head file does not fit the chain (the text `audit verify` prints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The line has no `hash` member at its end.
    #[error("not an audit record (no `hash` member at the end)")]
    NotARecord,
    /// The `hash` member is cut or not 64 hex digits.
    #[error("the record is cut short or its `hash` is malformed")]
    CutShort,
    /// The record is not JSON.
    #[error("the record is not valid JSON ({0})")]
    NotJson(String),
    /// The first record is not record 1 (and the check was not told the chain continues).
    #[error(
        "the chain starts at record {seq} instead of 1 (earlier records or files missing; pass --continuing if older files were deleted on purpose)"
    )]
    StartsLate {
        /// The first record's number.
        seq: u64,
    },
    /// A record's number does not follow the one before.
    #[error("record {seq} follows record {after} (records deleted, inserted or reordered)")]
    OutOfOrder {
        /// The record's number.
        seq: u64,
        /// The number of the record before it.
        after: u64,
    },
    /// A record's `prev` is not the hash of the record before.
    #[error(
        "record {seq} does not link to the record before it (`prev` differs: a record before it was changed, removed or inserted)"
    )]
    Unlinked {
        /// The record's number.
        seq: u64,
    },
    /// A record's hash does not match its contents.
    #[error(
        "record {seq} was altered (its hash does not match its contents{})",
        if *keyed { ", or the key is wrong" } else { ", or it was written with an HMAC key: pass --key-env" }
    )]
    Altered {
        /// The record's number.
        seq: u64,
        /// Whether the check used a key.
        keyed: bool,
    },
    /// The head file is not JSON of the expected shape.
    #[error("the head file is not valid ({0})")]
    BadHead(String),
    /// The head file's seal does not match.
    #[error("the head file was altered (or the key is wrong)")]
    HeadAltered,
    /// The head names a record past the chain's end.
    #[error(
        "the chain ends at record {ends_at} but record {written} was written (records cut off the end)"
    )]
    CutOff {
        /// The last record present.
        ends_at: u64,
        /// The record the head names.
        written: u64,
    },
    /// The head's record has another hash.
    #[error("record {seq} differs from the one the head file names")]
    HeadDiffers {
        /// The record's number.
        seq: u64,
    },
    /// The head's record is not in the files checked.
    #[error("record {seq} named by the head file is not in the files given")]
    HeadMissing {
        /// The record's number.
        seq: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(hasher: &Hasher, n: u64) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                // An argument may itself hold a `hash` member: only the last one is the seal.
                let (line, hash) = hasher.seal(
                    &prev,
                    &format!(
                        "{{\"seq\":{seq},\"x\":\"v{seq}\",\"arguments\":{{\"a\":1,\"hash\":\"{GENESIS}\"}},\"prev\":\"{prev}\""
                    ),
                );
                prev = hash;
                line
            })
            .collect()
    }

    fn verify(hasher: &Hasher, lines: &[String]) -> Result<ChainEnd, (usize, ChainError)> {
        let mut verifier = Verifier::new(hasher.clone(), false);
        for (i, line) in lines.iter().enumerate() {
            verifier.next(line).map_err(|e| (i + 1, e))?;
        }
        Ok(verifier.end())
    }

    #[test]
    fn an_intact_chain_verifies_and_every_tampering_names_its_line() {
        let hasher = Hasher::new(Some("a key of sixteen chars"));
        let lines = chain(&hasher, 5);
        assert_eq!(verify(&hasher, &lines).unwrap().records, 5);

        let mut edited = lines.clone();
        edited[2] = edited[2].replace("v3", "v9");
        assert_eq!(verify(&hasher, &edited).unwrap_err().0, 3);

        let mut deleted = lines.clone();
        deleted.remove(1);
        assert_eq!(verify(&hasher, &deleted).unwrap_err().0, 2);

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert_eq!(verify(&hasher, &swapped).unwrap_err().0, 2);

        let mut cut = lines.clone();
        cut[4].truncate(40);
        assert_eq!(verify(&hasher, &cut).unwrap_err().0, 5);

        // Recomputed with another key: refused at the first record.
        let forged = chain(&Hasher::new(Some("another key, also long")), 5);
        assert_eq!(verify(&hasher, &forged).unwrap_err().0, 1);
    }
}
