//! A tool's request from its validated arguments: the path template expanded with every value
//! percent-encoded (so a value cannot add a segment, `..`, a query, a fragment or a line
//! break), query pairs, and the JSON body with typed values.

use std::collections::HashMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use portcullis_config::Template;
use portcullis_core::ToolError;
use serde_json::Value;

use crate::params::Typed;

/// Everything but RFC 3986's unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The arguments by parameter name.
pub(super) type Values<'a> = HashMap<&'a str, Typed>;

/// A value as text, for paths, queries and interpolation.
fn text(value: &Typed) -> Option<String> {
    match value {
        Typed::Null => None,
        Typed::Bool(b) => Some(b.to_string()),
        Typed::Int(i) => Some(i.to_string()),
        Typed::Float(f) => Some(f.to_string()),
        Typed::Text(s) => Some(s.clone()),
        Typed::Array(items) => Some(items.iter().filter_map(text).collect::<Vec<_>>().join(",")),
    }
}

fn json(value: &Typed) -> Value {
    match value {
        Typed::Null => Value::Null,
        Typed::Bool(b) => Value::Bool(*b),
        Typed::Int(i) => Value::from(*i),
        Typed::Float(f) => Value::from(*f),
        Typed::Text(s) => Value::String(s.clone()),
        Typed::Array(items) => Value::Array(items.iter().map(json).collect()),
    }
}

/// A dot segment, however it is spelled (`..`, `%2e%2E`, `.`): URL parsers remove them.
fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase().replace("%2e", ".");
    lower == "." || lower == ".."
}

/// The path with every placeholder replaced by its encoded value.
pub(super) fn expand_path(template: &Template, values: &Values<'_>) -> Result<String, ToolError> {
    template.expand(|name, reserved| {
        let value = values.get(name).and_then(text).unwrap_or_default();
        let mut out = String::with_capacity(value.len() + 8);
        if reserved {
            for (i, segment) in value.split('/').enumerate() {
                if segment.is_empty() || is_dot_segment(segment) {
                    return Err(ToolError::rejected(format!(
                        "`{name}` must be a relative path of plain segments: no empty, `.` or `..` segment"
                    )));
                }
                if i > 0 {
                    out.push('/');
                }
                out.extend(utf8_percent_encode(segment, SEGMENT));
            }
        } else {
            if value.is_empty() || is_dot_segment(&value) {
                return Err(ToolError::rejected(format!(
                    "`{name}` must not be empty, `.` or `..`"
                )));
            }
            out.extend(utf8_percent_encode(&value, SEGMENT));
        }
        Ok(Some(out))
    })
}

/// Query pairs: a lone placeholder of an absent parameter is left out, an array repeats the
/// name, anything else is interpolated.
pub(super) fn query_pairs(
    query: &std::collections::BTreeMap<String, Template>,
    values: &Values<'_>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, template) in query {
        if let Some((name, _)) = template.alone() {
            match values.get(name) {
                None | Some(Typed::Null) => {}
                Some(Typed::Array(items)) => {
                    out.extend(items.iter().filter_map(text).map(|v| (key.clone(), v)));
                }
                Some(value) => out.extend(text(value).map(|v| (key.clone(), v))),
            }
            continue;
        }
        out.push((key.clone(), interpolate(template, values)));
    }
    out
}

/// Every placeholder replaced by its value as text (nothing for an absent one).
fn interpolate(template: &Template, values: &Values<'_>) -> String {
    let expanded = template.expand(|name, _| {
        Ok::<_, std::convert::Infallible>(Some(values.get(name).and_then(text).unwrap_or_default()))
    });
    match expanded {
        Ok(text) => text,
        Err(never) => match never {},
    }
}

/// The JSON body: `"{name}"` alone becomes the typed value (left out when absent), other
/// strings are interpolated, everything else is kept.
pub(super) fn body(template: &Value, values: &Values<'_>) -> Value {
    match template {
        Value::String(s) => {
            let parsed = Template::parse(s);
            if let Some((name, _)) = parsed.alone() {
                return values.get(name).map_or(Value::Null, json);
            }
            Value::String(interpolate(&parsed, values))
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| body(v, values)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter_map(|(k, v)| {
                    let value = body(v, values);
                    // An absent optional parameter leaves its field out.
                    let lone =
                        matches!(v, Value::String(s) if Template::parse(s).alone().is_some());
                    (!(lone && value.is_null())).then(|| (k.clone(), value))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&'static str, Typed)]) -> Values<'static> {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn path_values_cannot_add_segments_or_leave_the_path() {
        let template = &Template::parse("/repos/{owner}/{repo}/contents/{+path}");
        let ok = values(&[
            ("owner", Typed::Text("octo cat".into())),
            ("repo", Typed::Text("a/b?c#d".into())),
            ("path", Typed::Text("src/main ü.rs".into())),
        ]);
        assert_eq!(
            expand_path(template, &ok).expect("expands"),
            "/repos/octo%20cat/a%2Fb%3Fc%23d/contents/src/main%20%C3%BC.rs"
        );
        let crlf = values(&[
            ("owner", Typed::Text("x\r\nHost: evil".into())),
            ("repo", Typed::Text("r".into())),
            ("path", Typed::Text("p".into())),
        ]);
        assert_eq!(
            expand_path(template, &crlf).expect("encoded"),
            "/repos/x%0D%0AHost%3A%20evil/r/contents/p"
        );
        for bad in ["..", ".", "", "%2e%2E"] {
            let v = values(&[
                ("owner", Typed::Text(bad.into())),
                ("repo", Typed::Text("r".into())),
                ("path", Typed::Text("p".into())),
            ]);
            assert!(expand_path(template, &v).is_err(), "{bad:?}");
        }
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "a//b",
            "/abs",
            "a/./b",
            "a/%2e%2e/b",
        ] {
            let v = values(&[
                ("owner", Typed::Text("o".into())),
                ("repo", Typed::Text("r".into())),
                ("path", Typed::Text(bad.into())),
            ]);
            assert!(expand_path(template, &v).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_and_body_take_typed_values_and_leave_out_absent_ones() {
        let v = values(&[
            ("query", Typed::Text("rust & go".into())),
            ("limit", Typed::Int(5)),
            (
                "tags",
                Typed::Array(vec![Typed::Text("a".into()), Typed::Text("b".into())]),
            ),
            ("missing", Typed::Null),
        ]);
        let query: std::collections::BTreeMap<String, Template> = [
            ("q", "{query}"),
            ("count", "{limit}"),
            ("tag", "{tags}"),
            ("absent", "{missing}"),
            ("format", "json"),
            ("label", "top-{limit}"),
        ]
        .iter()
        .map(|(k, t)| ((*k).to_owned(), Template::parse(t)))
        .collect();
        assert_eq!(
            query_pairs(&query, &v),
            [
                ("count", "5"),
                ("format", "json"),
                ("label", "top-5"),
                ("q", "rust & go"),
                ("tag", "a"),
                ("tag", "b"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let template = serde_json::json!({
            "title": "{query}", "limit": "{limit}", "note": "about {query}",
            "absent": "{missing}", "fixed": 1, "nested": { "tags": "{tags}" }
        });
        assert_eq!(
            body(&template, &v),
            serde_json::json!({
                "title": "rust & go", "limit": 5, "note": "about rust & go",
                "fixed": 1, "nested": { "tags": ["a", "b"] }
            })
        );
    }
}
