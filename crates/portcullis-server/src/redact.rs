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
        let authority_end = after
            .find(|c: char| is_delimiter(c) || matches!(c, '/' | '?' | '#'))
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

const SECRET_KEYS: [&str; 7] = [
    "password", "passwd", "pwd", "secret", "token", "api_key", "apikey",
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
        // Allow `key = value`, `key: value`, `key="value"`.
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
            let end = match quote {
                Some(q) => text[j..].find(char::from(q)).map_or(text.len(), |e| j + e),
                None => text[j..]
                    .find(|c: char| is_delimiter(c) || c == '&')
                    .map_or(text.len(), |e| j + e),
            };
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
        let secret = *after_bearer || is_jwt(word) || word.starts_with("pcs_");
        *after_bearer = word.eq_ignore_ascii_case("bearer");
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
            ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
            (
                "got eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl here",
                "got *** here",
            ),
            ("key pcs_abcdef leaked", "key *** leaked"),
            ("no secrets at all: 42 rows", "no secrets at all: 42 rows"),
            ("tokenizer failed", "tokenizer failed"),
        ] {
            assert_eq!(redact_secrets(input), expect, "{input}");
        }
    }
}
