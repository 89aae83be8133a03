//! Checks a JSON document against a schema of the OpenAPI document served
//! at `/v1/openapi.json`, strictly: every object schema that lists its
//! properties and says nothing about others is closed for the check
//! (`additionalProperties: false`), so a field the document does not
//! describe fails as surely as a required one that is missing.
//!
//! Shared by tb-control's tests (the typed documents) and the daemon's
//! end-to-end test (the live answers), by path, so both use one checker.
#![allow(dead_code, unreachable_pub)]

use serde_json::Value;

/// The served OpenAPI document.
pub fn document() -> Value {
    match serde_json::from_str(tb_control::openapi_json()) {
        Ok(v) => v,
        Err(e) => panic!("openapi.json is not JSON: {e}"),
    }
}

/// JSON Pointer of the schema of the `200` answer of `method path`.
pub fn response_pointer(method: &str, path: &str) -> String {
    format!(
        "#/paths/{}/{}/responses/200/content/application~1json/schema",
        escape(path),
        method.to_ascii_lowercase()
    )
}

/// JSON Pointer of the request body schema of `method path`.
pub fn request_pointer(method: &str, path: &str) -> String {
    format!(
        "#/paths/{}/{}/requestBody/content/application~1json/schema",
        escape(path),
        method.to_ascii_lowercase()
    )
}

/// JSON Pointer of a component schema.
pub fn component_pointer(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// A JSON pointer segment inside a URI fragment: `~` and `/` escaped for
/// the pointer, `{` and `}` (path templates) percent-encoded for the URI.
fn escape(segment: &str) -> String {
    segment
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// The errors of `value` against the schema at `pointer` (empty: valid).
pub fn errors(doc: &Value, pointer: &str, value: &Value) -> Vec<String> {
    let mut root = doc.clone();
    close_objects(&mut root);
    if let Value::Object(m) = &mut root {
        m.insert("$ref".into(), Value::String(pointer.into()));
    }
    let validator = match jsonschema::validator_for(&root) {
        Ok(v) => v,
        Err(e) => return vec![format!("the schema at {pointer} does not compile: {e}")],
    };
    validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Panics with every error unless `value` matches the schema at `pointer`.
pub fn assert_valid(doc: &Value, pointer: &str, value: &Value) {
    let errs = errors(doc, pointer, value);
    assert!(
        errs.is_empty(),
        "{pointer}: the document does not match the OpenAPI schema:\n{}\n{value:#}",
        errs.join("\n")
    );
}

/// Closes every object schema that lists `properties` without saying
/// whether others are allowed.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            m.values_mut().for_each(close_objects);
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}
