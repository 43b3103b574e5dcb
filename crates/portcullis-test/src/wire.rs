//! A self-contained 2026-07-28 request as a conforming client sends it over HTTP: the
//! `_meta` envelope in its params and the headers that repeat what it is for. Shared by the
//! tests ([`crate::post_stateless`]) and the benchmark's load generator, so both speak the
//! protocol the same way.

use serde_json::{Value, json};

/// The stateless protocol revision.
pub const PROTOCOL_2026: &str = "2026-07-28";

/// The `_meta` every 2026-07-28 request carries: protocol version, client info (`client`
/// names it) and capabilities.
pub fn stateless_meta(client: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": PROTOCOL_2026,
        "io.modelcontextprotocol/clientInfo": { "name": client, "version": "0" },
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// The JSON-RPC request `method` with `params` (an object) and `_meta` added.
pub fn stateless_request(id: u64, method: &str, params: Value, client: &str) -> Value {
    let mut params = match params {
        Value::Object(_) => params,
        _ => json!({}),
    };
    params["_meta"] = stateless_meta(client);
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// The HTTP headers of a stateless request for `method` (`MCP-Protocol-Version`,
/// `Mcp-Method`, `Mcp-Name` from the params' `name` or `uri`, and the content types).
pub fn stateless_headers(method: &str, params: &Value) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("accept", "application/json, text/event-stream".to_owned()),
        ("mcp-protocol-version", PROTOCOL_2026.to_owned()),
        ("mcp-method", method.to_owned()),
    ];
    if let Some(name) = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
    {
        headers.push(("mcp-name", name.to_owned()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_its_meta_and_its_headers_name_it() {
        let request = stateless_request(3, "tools/call", json!({ "name": "t" }), "me");
        assert_eq!(request["id"], 3);
        assert_eq!(
            request["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]["name"],
            "me"
        );
        assert_eq!(request["params"]["name"], "t");
        let headers = stateless_headers("tools/call", &request["params"]);
        assert!(
            headers.contains(&("mcp-name", "t".to_owned())),
            "{headers:?}"
        );
        assert!(headers.contains(&("mcp-method", "tools/call".to_owned())));
        let read = stateless_headers("resources/read", &json!({ "uri": "note://a" }));
        assert!(
            read.contains(&("mcp-name", "note://a".to_owned())),
            "{read:?}"
        );
        assert!(
            !stateless_headers("tools/list", &json!({}))
                .iter()
                .any(|(h, _)| *h == "mcp-name")
        );
    }
}
