//! The one canonical form of a JSON value and its SHA-256: object keys sorted at every
//! depth, no whitespace. Two values that differ only in key order or spacing have the same
//! digest; any other byte of any value changes it. Pins of upstream definitions and the
//! binding of an approval to its call are both this digest.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// `value` in canonical form, as text.
pub fn canonical_json(value: &Value) -> String {
    serde_json::to_string(&canonical(value)).unwrap_or_default()
}

/// The lowercase hex SHA-256 of `value`'s canonical form.
pub fn canonical_digest(value: &Value) -> String {
    sha256_hex(canonical_json(value).as_bytes())
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = serde_json::Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_spacing_do_not_change_a_digest_and_a_byte_of_a_value_does() {
        let a: Value =
            serde_json::from_str(r#"{"b":{"y":1,"x":[2,{"q":1,"p":2}]},"a":"v"}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{ "a": "v", "b": { "x": [2, {"p": 2, "q": 1}], "y": 1 } }"#)
                .unwrap();
        let c: Value =
            serde_json::from_str(r#"{"a":"v ","b":{"x":[2,{"p":2,"q":1}],"y":1}}"#).unwrap();
        assert_eq!(canonical_digest(&a), canonical_digest(&b));
        assert_ne!(canonical_digest(&a), canonical_digest(&c));
        assert_eq!(
            canonical_json(&b),
            r#"{"a":"v","b":{"x":[2,{"p":2,"q":1}],"y":1}}"#
        );
    }
}
