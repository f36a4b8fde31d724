//! SCIM resources as JSON: what a client sends is normalised (Entra's string booleans, its bare-string
//! `manager`, explicit nulls) and checked; what the server answers gets `id`, `schemas` and `meta`. Also the
//! discovery documents: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`.

use serde_json::{Map, Value, json};

use super::ScimError;
use crate::store::Resource;

/// Core user schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise user extension.
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// List responses.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PATCH requests.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Errors.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Which kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/Users`
    User,
    /// `/Groups`
    Group,
}

impl Kind {
    /// `User` or `Group`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    /// `Users` or `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }
}

/// True for the core schemas, whose attributes live at the top level.
pub fn is_core_urn(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(USER_SCHEMA) || urn.eq_ignore_ascii_case(GROUP_SCHEMA)
}

/// The key of `obj` equal to `name` ignoring case.
pub fn key_ci(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// `"True"`/`"False"` (any case) as booleans; a boolean stays one.
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Drops nulls (an unassigned attribute) at every level, and empty objects left behind.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            for x in m.values_mut() {
                drop_nulls(x);
            }
        }
        Value::Array(a) => {
            a.retain(|x| !x.is_null());
            for x in a.iter_mut() {
                drop_nulls(x);
            }
        }
        _ => {}
    }
}

/// Turns a `manager` value in any of Entra's shapes (bare string, `{value}`, `[{value}]`) into `{value}`;
/// `None` removes it.
pub fn manager(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) if !s.is_empty() => Some(json!({"value": s})),
        Value::Object(m) => match m.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")).map(|(_, v)| v) {
            Some(Value::String(s)) if !s.is_empty() => {
                let mut out = m.clone();
                out.retain(|_, x| !x.is_null());
                Some(Value::Object(out))
            }
            _ => None,
        },
        Value::Array(a) => a.first().and_then(manager),
        _ => None,
    }
}

/// Normalises and checks the attributes of a resource, as stored: no `id`/`meta`, booleans as booleans,
/// `manager` as `{value}`, `members` as `[{value}]`, `schemas` listing what is there.
pub fn normalize(kind: Kind, mut doc: Map<String, Value>) -> Result<Map<String, Value>, ScimError> {
    for k in ["id", "meta"] {
        if let Some(key) = key_ci(&doc, k) {
            doc.remove(&key);
        }
    }
    let mut v = Value::Object(doc);
    drop_nulls(&mut v);
    let Value::Object(mut doc) = v else { return Err(ScimError::bad_request("invalidSyntax", "not an object")) };
    // Canonical casing for the attributes Postern reads.
    for name in ["userName", "externalId", "active", "displayName", "members", "emails", "name"] {
        if let Some(key) = key_ci(&doc, name)
            && key != name
            && let Some(value) = doc.remove(&key)
        {
            doc.insert(name.to_string(), value);
        }
    }
    for name in ["userName", "externalId", "displayName"] {
        match doc.get(name) {
            None | Some(Value::String(_)) => {}
            Some(_) => return Err(ScimError::bad_request("invalidValue", format!("{name} must be a string"))),
        }
    }
    // Multi-valued sub-attribute `primary` may come as a string too.
    for (_, value) in doc.iter_mut() {
        if let Value::Array(items) = value {
            for item in items.iter_mut() {
                if let Value::Object(m) = item
                    && let Some(key) = key_ci(m, "primary")
                    && let Some(b) = m.get(&key).and_then(boolean)
                {
                    m.insert(key, Value::Bool(b));
                }
            }
        }
    }
    match kind {
        Kind::User => {
            let user_name = doc.get("userName").and_then(Value::as_str).map(str::trim).unwrap_or_default();
            if user_name.is_empty() {
                return Err(ScimError::bad_request("invalidValue", "userName is required"));
            }
            match doc.get("active") {
                None => {
                    doc.insert("active".into(), Value::Bool(true));
                }
                Some(v) => match boolean(v) {
                    Some(b) => {
                        doc.insert("active".into(), Value::Bool(b));
                    }
                    None => return Err(ScimError::bad_request("invalidValue", "active must be true or false")),
                },
            }
            if let Some(key) = key_ci(&doc, ENTERPRISE_USER) {
                match doc.remove(&key) {
                    Some(Value::Object(mut ext)) => {
                        if let Some(mk) = key_ci(&ext, "manager")
                            && let Some(m) = ext.remove(&mk).as_ref().and_then(manager)
                        {
                            ext.insert("manager".into(), m);
                        }
                        if !ext.is_empty() {
                            doc.insert(ENTERPRISE_USER.into(), Value::Object(ext));
                        }
                    }
                    Some(_) => {
                        return Err(ScimError::bad_request(
                            "invalidValue",
                            "the enterprise extension must be an object",
                        ));
                    }
                    None => {}
                }
            }
        }
        Kind::Group => {
            let name = doc.get("displayName").and_then(Value::as_str).map(str::trim).unwrap_or_default();
            if name.is_empty() {
                return Err(ScimError::bad_request("invalidValue", "displayName is required"));
            }
            if let Some(members) = doc.remove("members") {
                let Value::Array(items) = members else {
                    return Err(ScimError::bad_request("invalidValue", "members must be a list"));
                };
                let mut out: Vec<Value> = Vec::new();
                for item in items {
                    let value = match &item {
                        Value::String(s) => s.clone(),
                        Value::Object(m) => match m.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")) {
                            Some((_, Value::String(s))) => s.clone(),
                            _ => return Err(ScimError::bad_request("invalidValue", "each member needs a value")),
                        },
                        _ => return Err(ScimError::bad_request("invalidValue", "each member needs a value")),
                    };
                    if out.iter().any(|m| m["value"] == value.as_str()) {
                        continue;
                    }
                    let mut m = Map::new();
                    m.insert("value".into(), Value::String(value));
                    if let Value::Object(o) = &item {
                        for k in ["display", "type"] {
                            if let Some(key) = key_ci(o, k)
                                && let Some(Value::String(s)) = o.get(&key)
                            {
                                m.insert(k.into(), Value::String(s.clone()));
                            }
                        }
                    }
                    out.push(Value::Object(m));
                }
                doc.insert("members".into(), Value::Array(out));
            }
        }
    }
    // `schemas`: the core schema, plus each extension present.
    let mut schemas = vec![Value::String(kind.schema().into())];
    for k in doc.keys() {
        if k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) && doc.get(k).is_some_and(Value::is_object) {
            schemas.push(Value::String(k.clone()));
        }
    }
    if let Some(key) = key_ci(&doc, "schemas") {
        doc.remove(&key);
    }
    doc.insert("schemas".into(), Value::Array(schemas));
    Ok(doc)
}

/// `W/"<version>"`.
pub fn etag(r: &Resource) -> String {
    format!("W/\"{}\"", r.version)
}

/// The resource as the server answers it, with `id` and `meta`; `base` is the SCIM base URL.
pub fn render(kind: Kind, r: &Resource, base: &str) -> Value {
    let mut doc = r.doc.clone();
    doc.insert("id".into(), Value::String(r.id.clone()));
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": kind.name(),
            "created": rfc3339(r.created),
            "lastModified": rfc3339(r.modified),
            "version": etag(r),
            "location": format!("{base}/{}/{}", kind.endpoint(), r.id),
        }),
    );
    Value::Object(doc)
}

/// Applies `attributes` / `excludedAttributes` (top-level names, ignoring case); `id`, `schemas` and `meta`
/// are always returned.
pub fn project(mut v: Value, attributes: &[String], excluded: &[String]) -> Value {
    if let Value::Object(m) = &mut v {
        let always = |k: &str| ["id", "schemas", "meta"].iter().any(|a| a.eq_ignore_ascii_case(k));
        let top = |s: &String| s.split('.').next().unwrap_or_default().to_string();
        if !attributes.is_empty() {
            let wanted: Vec<String> = attributes.iter().map(top).collect();
            m.retain(|k, _| always(k) || wanted.iter().any(|w| w.eq_ignore_ascii_case(k)));
        }
        let excluded: Vec<String> = excluded.iter().map(top).collect();
        m.retain(|k, _| always(k) || !excluded.iter().any(|w| w.eq_ignore_ascii_case(k)));
    }
    v
}

/// A new resource id: a version 7 UUID (milliseconds since the epoch, then a counter, then 62 random bits),
/// so ids sort in creation order, which is the order lists are paged in.
pub fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    // 48 bits of milliseconds and 12 bits of counter, never going backwards within this process.
    let stamp = {
        let mut current = LAST.load(Ordering::Relaxed);
        loop {
            let next = (ms << 12).max(current + 1);
            match LAST.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break next,
                Err(seen) => current = seen,
            }
        }
    };
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        std::process::abort();
    }
    let ms_part = stamp >> 12;
    let seq = (stamp & 0xfff) as u16;
    b[..6].copy_from_slice(&ms_part.to_be_bytes()[2..]);
    b[6] = 0x70 | ((seq >> 8) as u8 & 0x0f);
    b[7] = seq as u8;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `/ServiceProviderConfig`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/postern/postern#scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": super::MAX_PAGE},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The secret token from Postern's [scim] token setting, as Authorization: Bearer <token>.",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
    })
}

/// `/ResourceTypes` entries.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users", "description": "People",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")}
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups", "description": "Groups",
            "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")}
        }),
    ]
}

fn attr(name: &str, kind: &str, multi: bool, required: bool, case_exact: bool, uniqueness: &str) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": multi, "required": required, "caseExact": case_exact,
        "mutability": "readWrite", "returned": "default", "uniqueness": uniqueness, "description": name
    })
}

fn complex(name: &str, multi: bool, subs: &[&str]) -> Value {
    let mut a = attr(name, "complex", multi, false, false, "none");
    a["subAttributes"] = Value::Array(subs.iter().map(|s| attr(s, "string", false, false, false, "none")).collect());
    a
}

/// `/Schemas` entries.
pub fn schemas(base: &str) -> Vec<Value> {
    let user = json!({
        "id": USER_SCHEMA, "name": "User", "description": "User account",
        "attributes": [
            attr("userName", "string", false, true, false, "server"),
            complex("name", false, &["formatted", "familyName", "givenName", "middleName"]),
            attr("displayName", "string", false, false, false, "none"),
            attr("nickName", "string", false, false, false, "none"),
            attr("title", "string", false, false, false, "none"),
            attr("preferredLanguage", "string", false, false, false, "none"),
            attr("active", "boolean", false, false, false, "none"),
            complex("emails", true, &["value", "type", "primary"]),
            complex("phoneNumbers", true, &["value", "type", "primary"]),
            complex("addresses", true, &["formatted", "streetAddress", "locality", "region", "postalCode", "country", "type"]),
            complex("roles", true, &["value", "display", "type", "primary"]),
            attr("externalId", "string", false, false, true, "none"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{USER_SCHEMA}")}
    });
    let enterprise = json!({
        "id": ENTERPRISE_USER, "name": "EnterpriseUser", "description": "Enterprise user",
        "attributes": [
            attr("employeeNumber", "string", false, false, false, "none"),
            attr("costCenter", "string", false, false, false, "none"),
            attr("organization", "string", false, false, false, "none"),
            attr("division", "string", false, false, false, "none"),
            attr("department", "string", false, false, false, "none"),
            complex("manager", false, &["value", "displayName"]),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{ENTERPRISE_USER}")}
    });
    let group = json!({
        "id": GROUP_SCHEMA, "name": "Group", "description": "Group",
        "attributes": [
            attr("displayName", "string", false, true, false, "server"),
            complex("members", true, &["value", "display", "type"]),
            attr("externalId", "string", false, false, true, "none"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{GROUP_SCHEMA}")}
    });
    let mut out = vec![user, enterprise, group];
    for s in &mut out {
        s["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_shapes_are_normalised() {
        let doc = json!({
            "schemas": [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
            "UserName": "a@x.com", "active": "False", "title": null, "addresses": null,
            "emails": [{"primary": "True", "type": "work", "value": "a@x.com"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": "271", "employeeNumber": "7"},
            "id": "client-chosen", "meta": {"resourceType": "User"}
        });
        let n = normalize(Kind::User, doc.as_object().cloned().unwrap()).unwrap();
        assert_eq!(n["userName"], "a@x.com");
        assert_eq!(n["active"], false);
        assert!(!n.contains_key("title") && !n.contains_key("id") && !n.contains_key("meta"));
        assert_eq!(n["emails"][0]["primary"], true);
        assert_eq!(n[ENTERPRISE_USER]["manager"], json!({"value": "271"}));
        assert_eq!(n["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER]));
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
