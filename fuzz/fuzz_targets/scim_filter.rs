//! SCIM filters and attribute paths from list requests (`?filter=`) and PATCH paths: never panics, and a filter
//! that parses is evaluated against a stored-looking user without panicking either.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern::scim::filter::{matches, parse, parse_attr_path};
use serde_json::{Value, json};

fn user() -> &'static Value {
    static USER: OnceLock<Value> = OnceLock::new();
    USER.get_or_init(|| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "userName": "alice@example.com",
            "externalId": "9f2a1c3e-0000-4000-8000-000000000001",
            "displayName": "Alice Anders",
            "active": true,
            "name": {"givenName": "Alice", "familyName": "Anders"},
            "emails": [{"type": "work", "value": "alice@example.com", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Platform", "manager": {"value": "m1"}},
            "meta": {"resourceType": "User", "version": "W/\"3\""}
        })
    })
}

fuzz_target!(|text: &str| {
    if let Ok(filter) = parse(text) {
        let _ = matches(user(), &filter);
    }
    let _ = parse_attr_path(text);
});
