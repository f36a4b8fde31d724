//! SCIM PATCH (RFC 7644 §3.5.2), tolerant of what Entra sends: `op` in any case, booleans as strings,
//! path-less `replace` with dotted and URN keys, value-path filters (`emails[type eq "work"].value`,
//! `members[value eq "..."]`), member removal by a list of values, `manager` as a bare string. Operations
//! apply to a copy; the caller stores the result only when every operation succeeded.

use serde_json::{Map, Value};

use super::ScimError;
use super::filter::{self, Filter, Op};
use super::model::{is_core_urn, key_ci};

/// Most operations in one request.
const MAX_OPERATIONS: usize = 1000;

/// The operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// add
    Add,
    /// replace
    Replace,
    /// remove
    Remove,
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// What to do.
    pub kind: Kind,
    /// Where; `None`: the resource itself.
    pub path: Option<String>,
    /// With what.
    pub value: Option<Value>,
}

/// The operations of a PATCH request body.
pub fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let obj = body.as_object().ok_or_else(|| ScimError::bad_request("invalidSyntax", "the body must be an object"))?;
    let ops = key_ci(obj, "Operations")
        .and_then(|k| obj.get(&k))
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad_request("invalidSyntax", "Operations must be a list"))?;
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad_request("invalidSyntax", "Operations must have between 1 and 1000 entries"));
    }
    ops.iter()
        .map(|op| {
            let op = op
                .as_object()
                .ok_or_else(|| ScimError::bad_request("invalidSyntax", "each operation must be an object"))?;
            let field = |name: &str| key_ci(op, name).and_then(|k| op.get(&k));
            let kind = match field("op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
                Some("add") => Kind::Add,
                Some("replace") => Kind::Replace,
                Some("remove") => Kind::Remove,
                _ => return Err(ScimError::bad_request("invalidSyntax", "op must be add, replace or remove")),
            };
            let path = match field("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.trim().to_string()),
                Some(_) => return Err(ScimError::bad_request("invalidPath", "path must be a string")),
            };
            let value = field("value").cloned();
            if kind != Kind::Remove && value.is_none() {
                return Err(ScimError::bad_request("invalidValue", "add and replace need a value"));
            }
            Ok(Operation { kind, path, value })
        })
        .collect()
}

/// A parsed PATCH path.
#[derive(Debug)]
struct Path {
    uri: Option<String>,
    attr: Option<String>,
    filter: Option<Filter>,
    sub: Option<String>,
}

fn bad_path(text: &str) -> ScimError {
    ScimError::bad_request("invalidPath", format!("\"{text}\" is not a valid path"))
}

fn parse_path(text: &str) -> Result<Path, ScimError> {
    for urn in filter::KNOWN_URNS {
        if text.eq_ignore_ascii_case(urn) {
            return Ok(Path { uri: Some((*urn).to_string()), attr: None, filter: None, sub: None });
        }
    }
    let bracket = text.find('[');
    let head = &text[..bracket.unwrap_or(text.len())];
    let (uri, attr_part) = filter::split_urn(head);
    let uri = uri.filter(|u| !is_core_urn(u)).map(|u| canonical_urn(u).to_string());
    match bracket {
        None => {
            let p = filter::parse_attr_path(attr_part).map_err(|_| bad_path(text))?;
            Ok(Path { uri, attr: Some(p.attr), filter: None, sub: p.sub })
        }
        Some(open) => {
            let close = text.rfind(']').filter(|c| *c > open).ok_or_else(|| bad_path(text))?;
            let attr = filter::parse_attr_path(attr_part).map_err(|_| bad_path(text))?;
            if attr.sub.is_some() {
                return Err(bad_path(text));
            }
            let f = filter::parse(&text[open + 1..close]).map_err(|_| bad_path(text))?;
            let rest = &text[close + 1..];
            let sub = match rest.strip_prefix('.') {
                None if rest.is_empty() => None,
                Some(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') => {
                    Some(s.to_string())
                }
                _ => return Err(bad_path(text)),
            };
            Ok(Path { uri, attr: Some(attr.attr), filter: Some(f), sub })
        }
    }
}

fn canonical_urn(u: &str) -> &str {
    filter::KNOWN_URNS.iter().find(|k| k.eq_ignore_ascii_case(u)).copied().unwrap_or(u)
}

/// The object `uri` names in `doc` (the document itself for the core schema), created when asked.
fn container<'a>(
    doc: &'a mut Map<String, Value>,
    uri: &Option<String>,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let Some(uri) = uri else { return Some(doc) };
    let key = match key_ci(doc, uri) {
        Some(k) => k,
        None if create => {
            doc.insert(uri.clone(), Value::Object(Map::new()));
            uri.clone()
        }
        None => return None,
    };
    if !doc.get(&key).is_some_and(Value::is_object) {
        if !create {
            return None;
        }
        doc.insert(key.clone(), Value::Object(Map::new()));
    }
    doc.get_mut(&key).and_then(Value::as_object_mut)
}

/// Two elements of a multi-valued attribute are the same: equal `value`s, or equal altogether.
fn same_element(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn set_ci(obj: &mut Map<String, Value>, name: &str, value: Value) {
    let key = key_ci(obj, name).unwrap_or_else(|| name.to_string());
    obj.insert(key, value);
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        set_ci(into, &k, v);
    }
}

/// Sets attribute `name` of `obj`: add appends to lists and merges objects; replace replaces lists and merges
/// objects (RFC 7644 §3.5.2.1 and §3.5.2.3).
fn set_attr(obj: &mut Map<String, Value>, name: &str, value: Value, replace: bool) {
    let key = key_ci(obj, name).unwrap_or_else(|| name.to_string());
    match (obj.get_mut(&key), value) {
        (Some(Value::Array(existing)), Value::Array(new)) if !replace => {
            for item in new {
                if !existing.iter().any(|e| same_element(e, &item)) {
                    existing.push(item);
                }
            }
        }
        (Some(Value::Array(existing)), item @ Value::Object(_)) if !replace => {
            if !existing.iter().any(|e| same_element(e, &item)) {
                existing.push(item);
            }
        }
        (Some(Value::Object(existing)), Value::Object(new)) => merge(existing, new),
        (_, value) => {
            obj.insert(key, value);
        }
    }
}

fn forbidden(p: &Path) -> Result<(), ScimError> {
    if p.uri.is_none()
        && let Some(a) = &p.attr
        && (a.eq_ignore_ascii_case("id") || a.eq_ignore_ascii_case("meta"))
    {
        return Err(ScimError::bad_request("mutability", format!("{a} cannot be changed")));
    }
    Ok(())
}

fn set_path(doc: &mut Map<String, Value>, p: &Path, value: Value, replace: bool) -> Result<(), ScimError> {
    forbidden(p)?;
    let c = container(doc, &p.uri, true).ok_or_else(|| ScimError::bad_request("invalidPath", "no such schema"))?;
    let Some(attr) = &p.attr else {
        return match value {
            Value::Object(m) => {
                for (k, v) in m {
                    set_attr(c, &k, v, replace);
                }
                Ok(())
            }
            _ => Err(ScimError::bad_request("invalidValue", "an extension is set with an object")),
        };
    };
    let key = key_ci(c, attr).unwrap_or_else(|| attr.clone());
    match (&p.filter, &p.sub) {
        (None, None) => {
            set_attr(c, attr, value, replace);
            Ok(())
        }
        (None, Some(sub)) => {
            match c.get_mut(&key) {
                Some(Value::Array(items)) if !items.is_empty() => {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        set_ci(item, sub, value.clone());
                    }
                }
                Some(Value::Object(m)) => set_ci(m, sub, value),
                _ => {
                    let mut m = Map::new();
                    m.insert(sub.clone(), value);
                    c.insert(key, Value::Object(m));
                }
            }
            Ok(())
        }
        (Some(f), sub) => {
            if !c.get(&key).is_some_and(Value::is_array) {
                c.insert(key.clone(), Value::Array(Vec::new()));
            }
            let Some(Value::Array(items)) = c.get_mut(&key) else { return Ok(()) };
            let mut matched = false;
            for item in items.iter_mut() {
                if !filter::matches(item, f) {
                    continue;
                }
                matched = true;
                let Some(obj) = item.as_object_mut() else { continue };
                match (sub, &value) {
                    (Some(s), v) => set_ci(obj, s, v.clone()),
                    (None, Value::Object(m)) => merge(obj, m.clone()),
                    (None, _) => return Err(ScimError::bad_request("invalidValue", "the value must be an object")),
                }
            }
            if !matched {
                // Entra replaces `emails[type eq "work"].value` on a user without a work email: create it.
                let Filter::Compare(fp, Op::Eq, fv) = f else {
                    return Err(ScimError::bad_request("noTarget", "no element matches the path's filter"));
                };
                let mut obj = Map::new();
                obj.insert(fp.attr.clone(), fv.clone());
                match (sub, value) {
                    (Some(s), v) => {
                        obj.insert(s.clone(), v);
                    }
                    (None, Value::Object(m)) => merge(&mut obj, m),
                    (None, _) => return Err(ScimError::bad_request("invalidValue", "the value must be an object")),
                }
                items.push(Value::Object(obj));
            }
            Ok(())
        }
    }
}

fn remove_path(doc: &mut Map<String, Value>, p: &Path, value: Option<Value>) -> Result<(), ScimError> {
    forbidden(p)?;
    let Some(attr) = &p.attr else {
        if let Some(uri) = &p.uri
            && let Some(k) = key_ci(doc, uri)
        {
            doc.remove(&k);
        }
        return Ok(());
    };
    let Some(c) = container(doc, &p.uri, false) else { return Ok(()) };
    let Some(key) = key_ci(c, attr) else { return Ok(()) };
    match (&p.filter, &p.sub) {
        (None, None) => match (c.get_mut(&key), value) {
            (Some(Value::Array(items)), Some(v)) if !v.is_null() => {
                let gone: Vec<Value> = match v {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                items.retain(|i| !gone.iter().any(|g| same_element(i, g)));
            }
            _ => {
                c.remove(&key);
            }
        },
        (None, Some(sub)) => match c.get_mut(&key) {
            Some(Value::Array(items)) => {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(k) = key_ci(item, sub) {
                        item.remove(&k);
                    }
                }
            }
            Some(Value::Object(m)) => {
                if let Some(k) = key_ci(m, sub) {
                    m.remove(&k);
                }
            }
            _ => {}
        },
        (Some(f), sub) => {
            if let Some(Value::Array(items)) = c.get_mut(&key) {
                match sub {
                    None => items.retain(|i| !filter::matches(i, f)),
                    Some(s) => {
                        for item in items.iter_mut().filter(|i| filter::matches(i, f)).filter_map(Value::as_object_mut)
                        {
                            if let Some(k) = key_ci(item, s) {
                                item.remove(&k);
                            }
                        }
                    }
                }
            }
        }
    }
    if c.get(&key).is_some_and(|v| v.as_array().is_some_and(Vec::is_empty)) {
        c.remove(&key);
    }
    Ok(())
}

/// Applies `ops` to `doc` in order; on error `doc` may be partly changed, so pass a copy.
pub fn apply(doc: &mut Map<String, Value>, ops: &[Operation]) -> Result<(), ScimError> {
    for op in ops {
        match (op.kind, &op.path) {
            (Kind::Remove, None) => return Err(ScimError::bad_request("noTarget", "remove needs a path")),
            (Kind::Remove, Some(path)) => remove_path(doc, &parse_path(path)?, op.value.clone())?,
            (kind, Some(path)) => {
                set_path(doc, &parse_path(path)?, op.value.clone().unwrap_or(Value::Null), kind == Kind::Replace)?
            }
            (kind, None) => {
                let Some(Value::Object(m)) = &op.value else {
                    return Err(ScimError::bad_request(
                        "invalidValue",
                        "an operation without a path needs an object value",
                    ));
                };
                for (k, v) in m {
                    set_path(doc, &parse_path(k)?, v.clone(), kind == Kind::Replace)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, body: Value) -> Result<Value, ScimError> {
        let mut d = doc.as_object().cloned().unwrap();
        apply(&mut d, &parse(&body)?)?;
        Ok(Value::Object(d))
    }

    #[test]
    fn entra_legacy_and_compliant_patches_apply() {
        let user = json!({"userName": "a", "active": true, "emails": [{"type": "work", "value": "old@x"}], "name": {"givenName": "A", "familyName": "B"}});
        let out =
            run(user.clone(), json!({"Operations": [{"op": "Replace", "path": "active", "value": "False"}]})).unwrap();
        assert_eq!(out["active"], "False", "normalised later, by the model");
        let out = run(
            user.clone(),
            json!({"Operations": [
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@x"},
                {"op": "Replace", "path": "name.givenName", "value": "G"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "9"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "271"}
            ]}),
        )
        .unwrap();
        assert_eq!(out["emails"], json!([{"type": "work", "value": "new@x"}]));
        assert_eq!(out["name"], json!({"givenName": "G", "familyName": "B"}));
        assert_eq!(
            out["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            json!({"employeeNumber": "9", "manager": "271"})
        );
        let out = run(
            user,
            json!({"Operations": [{"op": "replace", "value": {"displayName": "D", "name.givenName": "K", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "A"}}]}),
        )
        .unwrap();
        assert_eq!(out["displayName"], "D");
        assert_eq!(out["name"]["givenName"], "K");
        assert_eq!(out["name"]["familyName"], "B");
        assert_eq!(out["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"], "A");
    }

    #[test]
    fn members_are_added_and_removed_in_every_form() {
        let group = json!({"displayName": "g", "members": [{"value": "u1"}]});
        let out = run(group, json!({"Operations": [{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u2"}, {"value": "u1"}]}]})).unwrap();
        assert_eq!(out["members"].as_array().unwrap().len(), 2);
        let out2 =
            run(out.clone(), json!({"Operations": [{"op": "Remove", "path": "members", "value": [{"value": "u1"}]}]}))
                .unwrap();
        assert_eq!(out2["members"].as_array().unwrap().len(), 1);
        let out3 =
            run(out.clone(), json!({"Operations": [{"op": "remove", "path": "members[value eq \"u2\"]"}]})).unwrap();
        assert_eq!(out3["members"], json!([{"value": "u1"}]));
        let out4 = run(out, json!({"Operations": [{"op": "remove", "path": "members"}]})).unwrap();
        assert!(out4.get("members").is_none());
    }

    #[test]
    fn bad_patches_are_errors() {
        let doc = json!({"userName": "a"});
        for body in [
            json!([]),
            json!({"Operations": []}),
            json!({"Operations": [{"op": "frob", "path": "a", "value": 1}]}),
            json!({"Operations": [{"op": "add", "path": "a"}]}),
            json!({"Operations": [{"op": "remove"}]}),
            json!({"Operations": [{"op": "add", "value": "x"}]}),
            json!({"Operations": [{"op": "add", "path": "emails[type eq", "value": "x"}]}),
            json!({"Operations": [{"op": "add", "path": "id", "value": "x"}]}),
            json!({"Operations": [{"op": "add", "path": "a.b.c", "value": "x"}]}),
            json!({"Operations": [{"op": "replace", "path": "emails[type ne \"work\"].value", "value": "x"}]}),
        ] {
            assert!(run(doc.clone(), body.clone()).is_err(), "{body}");
        }
    }
}
