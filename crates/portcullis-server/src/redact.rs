//! Scrubbing secrets out of text bound for the logs: the descriptions of internal errors and
//! panics, whose source chains can quote a connection string or a header.
//!
//! What is scrubbed: the user-info of URLs (`postgres://user:password@host` becomes
//! `postgres://***@host`), the values of `password=`, `pwd=`, `secret=`, `token=`,
//! `api_key=` and `apikey=` pairs, bearer tokens, JWTs and Portcullis API keys.

/// `text` with every secret it recognises replaced by `***`.
///
/// ```
/// use portcullis_server::redact_secrets;
/// assert_eq!(
///     redact_secrets("connect to postgres://admin:hunter2@db:5432/app failed"),
///     "connect to postgres://***@db:5432/app failed"
/// );
/// assert_eq!(redact_secrets("password=hunter2 host=db"), "password=*** host=db");
/// ```
pub fn redact_secrets(text: &str) -> String {
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
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // User-info may hold `/`, `?`, `#` (a password with them): it ends at the last `@`
        // before the next whitespace or quote; without one, the authority ends at `/?#`.
        let word_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let word = &after[..word_end];
        // A `/` before the `@` belongs to a password only after a `user:` (else the `@` is
        // in the path: `https://host/a@b`).
        let host_start = word.rfind('@').map(|at| at + 1).filter(|&start| {
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

/// `password=value` (also `:` and quoted forms) → `password=***`.
fn pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let found = SECRET_KEYS
            .iter()
            .filter_map(|key| lower[i..].find(key).map(|at| (i + at, key.len())))
            .min();
        let Some((at, len)) = found else { break };
        let mut j = at + len;
        let bytes = text.as_bytes();
        // The rest of the key's name (`secret_access_key`), a closing quote of a JSON key,
        // then `=` or `:`.
        while j < bytes.len()
            && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'-')
        {
            j += 1;
        }
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
            out.push_str(&text[i..at + len]);
            i = at + len;
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
    use super::redact_secrets;

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
}
