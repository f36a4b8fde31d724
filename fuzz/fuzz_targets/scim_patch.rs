//! SCIM resource bodies (POST/PUT) and PATCH bodies, as JSON from the provisioning client: never panics;
//! whatever PATCH leaves behind either normalises into a storable resource or is refused as a whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::scim::model::{Kind, normalize};
use postern::scim::patch::{apply, parse};
use serde_json::{Map, Value, json};

fn user() -> Map<String, Value> {
    let v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@example.com",
        "externalId": "9f2a1c3e-0000-4000-8000-000000000001",
        "active": true,
        "emails": [{"type": "work", "value": "alice@example.com", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m1"}}
    });
    v.as_object().cloned().unwrap_or_default()
}

fn group() -> Map<String, Value> {
    let v = json!({"displayName": "eng", "members": [{"value": "u1"}, {"value": "u2"}]});
    v.as_object().cloned().unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    // As a resource sent by POST or PUT.
    if let Value::Object(doc) = &body {
        for kind in [Kind::User, Kind::Group] {
            if let Ok(stored) = normalize(kind, doc.clone()) {
                // Normalising is idempotent: what is stored normalises to itself.
                assert_eq!(normalize(kind, stored.clone()).ok(), Some(stored));
            }
        }
    }
    // As a PATCH body, on a copy of a user and of a group (the server applies PATCH to a copy too).
    if let Ok(ops) = parse(&body) {
        for (kind, original) in [(Kind::User, user()), (Kind::Group, group())] {
            let mut doc = original.clone();
            if apply(&mut doc, &ops).is_ok() {
                let _ = normalize(kind, doc);
            }
        }
    }
});
