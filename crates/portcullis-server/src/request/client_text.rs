//! Client text on its way into a log line, a metrics label, an audit record or a span
//! attribute: cut and counted here, and only here. A client chooses argument keys, names,
//! URIs, ids and its own name; none of them may make a record longer than these bounds,
//! whatever the request carried, and nothing is dropped silently (a cut says how much it
//! left out).

use std::borrow::Cow;

/// Longest piece of client text kept, in bytes (cut at a character boundary).
pub(crate) const MAX_BYTES: usize = 128;

/// Most keys kept of one object.
pub(crate) const MAX_KEYS: usize = 64;

/// `text`, or its first [`MAX_BYTES`] bytes and how many more it had: `abc…(+N bytes)`.
pub(crate) fn cut(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…(+{} bytes)", &text[..end], text.len() - end))
}

/// The first [`MAX_KEYS`] of `keys`, each [`cut`], and then, if there were more, how many:
/// `…(+N more)`.
pub(crate) fn keys<'a>(keys: impl ExactSizeIterator<Item = &'a String>) -> Vec<String> {
    let total = keys.len();
    let mut kept: Vec<String> = keys
        .take(MAX_KEYS)
        .map(|key| cut(key).into_owned())
        .collect();
    if let Some(more) = more(total) {
        kept.push(more);
    }
    kept
}

/// What stands for the keys past the first [`MAX_KEYS`] of `total`, if any.
pub(crate) fn more(total: usize) -> Option<String> {
    (total > MAX_KEYS).then(|| format!("…(+{} more)", total - MAX_KEYS))
}

#[cfg(test)]
mod tests {
    use super::{MAX_BYTES, cut, keys};

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_and_counted() {
        assert_eq!(cut("path"), "path");
        let exact = "a".repeat(MAX_BYTES);
        assert_eq!(cut(&exact), exact);
        let long = "a".repeat(1024 * 1024);
        assert_eq!(
            cut(&long),
            format!("{}…(+{} bytes)", "a".repeat(128), 1024 * 1024 - 128)
        );
        // Never inside a character: 127 ASCII bytes, then a 4-byte one across the bound.
        let mixed = format!("{}😀tail", "a".repeat(127));
        assert_eq!(
            cut(&mixed),
            format!("{}…(+{} bytes)", "a".repeat(127), mixed.len() - 127)
        );
    }

    #[test]
    fn many_keys_are_counted() {
        let few: Vec<String> = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(keys(few.iter()), ["a", "b"]);
        let many: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        let kept = keys(many.iter());
        assert_eq!(kept.len(), 65);
        assert_eq!(kept[63], "k63");
        assert_eq!(kept[64], "…(+936 more)");
    }
}
