//! Scrubbing secrets out of text bound for the logs: the descriptions of internal errors and
//! panics, whose source chains can quote a connection string or a header.
//!
//! What is scrubbed: the user-info of URLs (`postgres://user:password@host` becomes
//! `postgres://***@host`), the values of `password=`, `pwd=`, `secret=`, `token=`,
//! `api_key=` and `apikey=` pairs, bearer tokens, JWTs and Portcullis API keys.
//!
//! Every pass takes time linear in the text's length: the text can come from outside (an
//! upstream's error body, a database's message), and scrubbing runs synchronously on an
//! async worker, where no deadline can interrupt it. Callers still cut what they show first
//! and scrub the cut, so the work is bounded by what is shown, not by what was received.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, Input, MatchKind};

/// `text` with every secret it recognises replaced by `***`.
///
/// ```
/// use portcullis_core::redact_secrets;
/// assert_eq!(
///     redact_secrets("connect to postgres://admin:hunter2@db:5432/app failed"),
///     "connect to postgres://***@db:5432/app failed"
/// );
/// assert_eq!(redact_secrets("password=hunter2 host=db"), "password=*** host=db");
/// ```
///
/// Text longer than 64 KiB is cut first (after its last whole word before
/// the limit) and ends with a note of how much was left out: what is scrubbed, and so the
/// time it takes, is bounded whatever the caller hands in.
pub fn redact_secrets(text: &str) -> String {
    let (text, left_out) = if text.len() > MAX_SCRUBBED_BYTES {
        let mut end = MAX_SCRUBBED_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // A word cut short may be a secret that no longer looks like one (a JWT without
        // its signature): it goes with the rest.
        let end = text[..end].rfind(char::is_whitespace).unwrap_or(0);
        (&text[..end], text.len() - end)
    } else {
        (text, 0)
    };
    let mut text = scrub(text);
    if left_out > 0 {
        text.push_str(&format!(" … ({left_out} more bytes not shown)"));
    }
    text
}

/// Most bytes of text that [`redact_secrets`] scrubs.
const MAX_SCRUBBED_BYTES: usize = 64 * 1024;

/// Every pass over `text`, in time linear in its length.
fn scrub(text: &str) -> String {
    let text = userinfo(text);
    let text = pairs(&text);
    tokens(&text)
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | ')' | '(' | ',' | ';')
}

/// `scheme://user:pass@host` → `scheme://***@host`.
fn userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // The word (up to whitespace or a quote) that the last `://` was found in, as offsets
    // into `text`, and its last `@`: several `://` in one word share them, so each is found
    // once per word, not once per `://` (`x://x://…` would otherwise be quadratic).
    let mut word_cache: Option<(usize, usize, Option<usize>)> = None;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let after_start = text.len() - after.len();
        // User-info may hold `/`, `?`, `#` (a password with them): it ends at the last `@`
        // before the next whitespace or quote; without one, the authority ends at `/?#`.
        let (word_end, last_at) = match word_cache {
            Some((start, end, last_at)) if start <= after_start && after_start <= end => {
                (end, last_at)
            }
            _ => {
                let end = after_start
                    + after
                        .find(|c: char| {
                            c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')
                        })
                        .unwrap_or(after.len());
                let last_at = text[after_start..end].rfind('@').map(|a| after_start + a);
                word_cache = Some((after_start, end, last_at));
                (end, last_at)
            }
        };
        let word = &after[..word_end - after_start];
        // A `/` before the `@` belongs to a password only after a `user:` (else the `@` is
        // in the path: `https://host/a@b`).
        let last_at = last_at
            .filter(|&a| a >= after_start)
            .map(|a| a - after_start);
        let host_start = last_at.map(|at| at + 1).filter(|&start| {
            let info = &word[..start - 1];
            match info.find(['/', '?', '#']) {
                None => true,
                Some(cut) => info[..cut].contains(':'),
            }
        });
        let authority_end = word[host_start.unwrap_or(0)..]
            .find(['/', '?', '#'])
            .map_or(word.len(), |e| host_start.unwrap_or(0) + e);
        if let Some(start) = host_start
            && start <= authority_end
        {
            out.push_str("***@");
            out.push_str(&after[start..authority_end]);
        } else {
            out.push_str(&after[..authority_end]);
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Key names whose values are secrets; a key that merely contains one (`secret_key`,
/// `aws_secret_access_key`, `x-api-key`) counts too.
const SECRET_KEYS: [&str; 12] = [
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "credential",
    "authorization",
    "auth",
];

/// [`SECRET_KEYS`] as one automaton, ASCII case ignored: one pass finds the next key of
/// any of them.
static SECRET_KEY_MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(SECRET_KEYS)
        .expect("the secret key names are valid patterns")
});

/// `password=value` (also `:` and quoted forms) → `password=***`.
fn pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Each search starts where the last one's match (or value) ended, so the text is
    // scanned once.
    while i < text.len() {
        let Some(found) = SECRET_KEY_MATCHER.find(Input::new(text).span(i..text.len())) else {
            break;
        };
        let (at, len) = (found.start(), found.len());
        let mut j = at + len;
        let bytes = text.as_bytes();
        // The rest of the key's name (`secret_access_key`), a closing quote of a JSON key,
        // then `=` or `:`.
        while j < bytes.len()
            && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'-')
        {
            j += 1;
        }
        let name_end = j;
        if j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'') {
            j += 1;
        }
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j < bytes.len() && (bytes[j] == b'=' || bytes[j] == b':') {
            j += 1;
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            // A quoted value runs to its closing quote, spaces included.
            let quote = bytes.get(j).copied().filter(|b| *b == b'"' || *b == b'\'');
            if quote.is_some() {
                j += 1;
            }
            let mut end = match quote {
                Some(q) => text[j..].find(char::from(q)).map_or(text.len(), |e| j + e),
                None => text[j..]
                    .find(|c: char| is_delimiter(c) || c == '&')
                    .map_or(text.len(), |e| j + e),
            };
            // `Authorization: Bearer xyz`: the credentials follow the scheme.
            let scheme = text[j..end].to_ascii_lowercase();
            if quote.is_none() && ["bearer", "basic", "token", "digest"].contains(&scheme.as_str())
            {
                let after = end + text[end..].len() - text[end..].trim_start().len();
                end = text[after..]
                    .find(|c: char| is_delimiter(c) || c == '&')
                    .map_or(text.len(), |e| after + e);
            }
            out.push_str(&text[i..j]);
            if end > j {
                out.push_str("***");
            }
            i = end;
        } else {
            // A key found further on in the same name would end at the same place and fail
            // the same way, so the search goes on after the name (`passwordpassword…`
            // would otherwise be quadratic).
            out.push_str(&text[i..name_end]);
            i = name_end;
        }
    }
    out.push_str(&text[i..]);
    out
}

/// Bearer tokens, JWTs (three base64url segments) and `pcs_` API keys, word by word.
fn tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, after_bearer: &mut bool| {
        if word.is_empty() {
            return;
        }
        // Trailing punctuation is not part of a token (`…JWT.`, `…JWT:`).
        let core = word.trim_end_matches(['.', ':', ']', '[', '}', '{']);
        let core = core.trim_start_matches(['[', '{']);
        let secret = *after_bearer || is_jwt(core) || core.starts_with("pcs_");
        *after_bearer = ["bearer", "basic", "token"]
            .iter()
            .any(|s| core.eq_ignore_ascii_case(s))
            || core.eq_ignore_ascii_case("bearer=");
        out.push_str(if secret { "***" } else { word });
        word.clear();
    };
    for c in text.chars() {
        if is_delimiter(c) {
            flush(&mut word, &mut out, &mut after_bearer);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out, &mut after_bearer);
    out
}

fn is_jwt(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts[0].len() >= 10
        && parts[1].len() >= 10
        && parts.iter().all(|p| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=')
        })
}

#[cfg(test)]
mod tests {
    use super::{MAX_SCRUBBED_BYTES, redact_secrets, scrub};

    #[test]
    fn secrets_are_scrubbed_and_the_rest_kept() {
        for (input, expect) in [
            (
                "error connecting to mysql://root:s3cret@127.0.0.1:3306/test",
                "error connecting to mysql://***@127.0.0.1:3306/test",
            ),
            (
                "https://example.com/path?q=1",
                "https://example.com/path?q=1",
            ),
            (
                "user=app password='p w' host=db",
                "user=app password='***' host=db",
            ),
            ("Password: hunter2, retry", "Password: ***, retry"),
            ("token=abc&x=1", "token=***&x=1"),
            ("Authorization: Bearer abc.def", "Authorization: ***"),
            ("sent Bearer abc.def", "sent Bearer ***"),
            (
                "got eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl here",
                "got *** here",
            ),
            ("key pcs_abcdef leaked", "key *** leaked"),
            ("no secrets at all: 42 rows", "no secrets at all: 42 rows"),
            ("tokenizer failed", "tokenizer failed"),
            (
                r#"{"password":"hunter2","user":"a"}"#,
                r#"{"password":"***","user":"a"}"#,
            ),
            ("postgres://u:pa/ss@db:5432/x", "postgres://***@db:5432/x"),
            ("mysql://u:p#w?x@db/y", "mysql://***@db/y"),
            ("Authorization: Basic dXNlcjpwYXNz", "Authorization: ***"),
            ("x-api-key: abc123", "x-api-key: ***"),
            ("aws_secret_access_key=AKIAXYZ", "aws_secret_access_key=***"),
            (
                "bad jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl.",
                "bad jwt ***",
            ),
            (
                "[eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl]",
                "***",
            ),
            ("key pcs_abc:suffix", "key ***"),
            ("https://example.com/a@b", "https://example.com/a@b"),
        ] {
            assert_eq!(redact_secrets(input), expect, "{input}");
        }
    }

    /// Adversarial text (a keyword or a URL scheme over and over, no value, no whitespace)
    /// once took time quadratic in its length: 1 MiB of `auth ` about five minutes. Each
    /// input is scrubbed on its own thread, so a slow one fails at the limit instead of
    /// hanging the test.
    #[test]
    fn scrubbing_takes_linear_time_on_adversarial_text() {
        const SIZE: usize = 1024 * 1024;
        for unit in ["auth ", "password", "x://", "a://u:p@", "token=", "Bearer "] {
            let input = unit.repeat(SIZE / unit.len());
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let out = scrub(&input);
                let _ = done.send((started.elapsed(), out.len()));
            });
            let (elapsed, len) = finished
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("1 MiB of `{unit}` took longer than 10 s to scrub"));
            assert!(len > 0, "`{unit}`: {elapsed:?}");
        }
    }

    #[test]
    fn long_text_is_cut_before_it_is_scrubbed() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        // The JWT straddles the limit: cut short it would not look like one.
        let mut input = "password=hunter2 ".repeat(MAX_SCRUBBED_BYTES / 17);
        input.truncate(MAX_SCRUBBED_BYTES - 20);
        input.push(' ');
        input.push_str(jwt);
        input.push_str(&" tail".repeat(1000));
        let out = redact_secrets(&input);
        assert!(out.len() < MAX_SCRUBBED_BYTES, "{}", out.len());
        assert!(
            !out.contains("hunter2") && !out.contains("eyJ"),
            "a secret is left"
        );
        assert!(
            out.ends_with(&format!(
                " … ({} more bytes not shown)",
                input.len() - (MAX_SCRUBBED_BYTES - 20)
            )),
            "{}",
            &out[out.len() - 80..]
        );
    }
}
