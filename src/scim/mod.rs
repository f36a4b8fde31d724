//! The SCIM 2.0 endpoint (RFC 7643/7644) that Entra's provisioning service (or any SCIM client) writes the
//! directory through: `/Users`, `/Groups`, `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`, under the
//! configured path on the public listener, behind a bearer secret compared in constant time. Every write is
//! computed on a copy and committed in one transaction with the sessions it ends; deactivating or deleting a
//! user cuts them off before the response is sent. Bad input gets a SCIM error, never a panic. Never logs the
//! secret or a request body.

pub mod filter;
pub mod model;
pub mod patch;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::body::{Body, full};
use crate::directory::user_transition;
use crate::state::State;
use crate::store::{Change, Committed, DirData, Resource, WriteError};
use model::Kind;

/// Largest page of a list.
pub const MAX_PAGE: usize = 200;

/// Largest request body.
const MAX_BODY: usize = 1024 * 1024;

/// A SCIM error (RFC 7644 §3.12): status, `scimType` and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    /// The HTTP status.
    pub status: StatusCode,
    /// `invalidFilter`, `uniqueness`, `invalidValue`, ...
    pub scim_type: Option<&'static str>,
    /// What went wrong, for the client.
    pub detail: String,
}

impl ScimError {
    /// 400 with `scimType`.
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError { status: StatusCode::BAD_REQUEST, scim_type: Some(scim_type), detail: detail.into() }
    }

    /// Any status without `scimType`.
    pub fn status(status: StatusCode, detail: impl Into<String>) -> ScimError {
        ScimError { status, scim_type: None, detail: detail.into() }
    }

    /// 404.
    pub fn not_found(kind: Kind, id: &str) -> ScimError {
        ScimError::status(StatusCode::NOT_FOUND, format!("no {} with id {id}", kind.name().to_lowercase()))
    }

    /// 409 `uniqueness`.
    pub fn conflict(detail: impl Into<String>) -> ScimError {
        ScimError { status: StatusCode::CONFLICT, scim_type: Some("uniqueness"), detail: detail.into() }
    }

    /// The response.
    pub fn response(&self) -> Response<Body> {
        let mut body =
            json!({"schemas": [model::ERROR], "status": self.status.as_u16().to_string(), "detail": self.detail});
        if let Some(t) = self.scim_type {
            body["scimType"] = Value::String(t.into());
        }
        let mut r = scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"postern-scim\""));
        }
        r
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/scim+json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn with_etag(mut r: Response<Body>, resource: &Resource) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&model::etag(resource)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// True when `path` is under the SCIM base path `base`.
pub fn owns(path: &str, base: &str) -> bool {
    path == base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

/// True when the request carries the SCIM secret. Both sides are hashed first, so the comparison takes the
/// same time whatever the lengths, and then compared in constant time.
fn authorized(headers: &HeaderMap, secret: &str) -> bool {
    let Some(token) = crate::authn::bearer_token(headers) else { return false };
    let digest = |s: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(digest(token).as_ref(), digest(secret).as_ref()).is_ok()
}

/// The query parameters a SCIM list or read understands.
#[derive(Debug, Default)]
struct Query {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

fn query(q: Option<&str>) -> Query {
    let mut out = Query::default();
    let list = |v: &str| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        match k.to_ascii_lowercase().as_str() {
            "filter" => out.filter = Some(v.into_owned()),
            "startindex" => out.start_index = Some(v.into_owned()),
            "count" => out.count = Some(v.into_owned()),
            "attributes" => out.attributes = list(&v),
            "excludedattributes" => out.excluded = list(&v),
            // `aadOptscim062020` and anything else: ignored.
            _ => {}
        }
    }
    out
}

async fn read_json(req: Request<Incoming>) -> Result<Value, ScimError> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ScimError::status(StatusCode::PAYLOAD_TOO_LARGE, "the request body is larger than 1 MiB")
        } else {
            ScimError::bad_request("invalidSyntax", "the request body could not be read")
        }
    })?;
    let bytes: Bytes = body.to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::bad_request("invalidSyntax", format!("the body is not JSON: {e}")))
}

fn doc_of(v: Value) -> Result<Map<String, Value>, ScimError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ScimError::bad_request("invalidSyntax", "the body must be a JSON object")),
    }
}

/// Checks `If-Match` against the stored version.
fn precondition(if_match: &Option<String>, r: &Resource) -> Result<(), ScimError> {
    let Some(wanted) = if_match else { return Ok(()) };
    let current = r.version.to_string();
    let ok =
        wanted.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == current);
    if ok {
        Ok(())
    } else {
        Err(ScimError::status(
            StatusCode::PRECONDITION_FAILED,
            "the resource has changed (If-Match does not match its version)",
        ))
    }
}

fn table(data: &DirData, kind: Kind) -> &std::collections::BTreeMap<String, std::sync::Arc<Resource>> {
    match kind {
        Kind::User => &data.users,
        Kind::Group => &data.groups,
    }
}

/// Refuses a resource whose unique attributes another one already has.
fn check_unique(data: &DirData, kind: Kind, doc: &Map<String, Value>, own_id: Option<&str>) -> Result<(), ScimError> {
    let unique = match kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    };
    let name = doc.get(unique).and_then(Value::as_str).unwrap_or_default();
    let external = doc.get("externalId").and_then(Value::as_str);
    for other in table(data, kind).values().filter(|o| Some(o.id.as_str()) != own_id) {
        if other.str_attr(unique).is_some_and(|n| n.eq_ignore_ascii_case(name)) {
            return Err(ScimError::conflict(format!(
                "a {} with {unique} \"{name}\" exists",
                kind.name().to_lowercase()
            )));
        }
        if let (Some(x), Some(y)) = (external, other.str_attr("externalId"))
            && x.eq_ignore_ascii_case(y)
        {
            return Err(ScimError::conflict(format!(
                "a {} with externalId \"{x}\" exists",
                kind.name().to_lowercase()
            )));
        }
    }
    Ok(())
}

/// Refuses members that are neither users nor groups.
fn check_members(data: &DirData, doc: &Map<String, Value>) -> Result<(), ScimError> {
    if let Some(Value::Array(members)) = doc.get("members") {
        for m in members {
            let id = m.get("value").and_then(Value::as_str).unwrap_or_default();
            if !data.users.contains_key(id) && !data.groups.contains_key(id) {
                return Err(ScimError::bad_request(
                    "invalidValue",
                    format!("member {id} is not a known user or group"),
                ));
            }
        }
    }
    Ok(())
}

/// The change that writes `after` (a new version of `before`, or a new resource), with its revocations.
fn put(data: &DirData, kind: Kind, before: Option<&Resource>, after: Resource, by: &str, now: u64) -> Change {
    let mut change = Change::default();
    if kind == Kind::User {
        user_transition(data, before, Some(&after), by, now, &mut change);
        change.put_users.push(after);
    } else {
        change.put_groups.push(after);
    }
    change
}

/// Answers one SCIM request (`req` is under `[scim] path`).
pub async fn handle(st: &State, req: Request<Incoming>, request_id: &str) -> Response<Body> {
    let Some(config) = st.config.scim.clone() else {
        return ScimError::status(StatusCode::NOT_FOUND, "SCIM is not enabled").response();
    };
    if !authorized(req.headers(), config.token.expose()) {
        tracing::warn!(target: "audit", request_id, event = "scim-unauthorized", method = %req.method(), "SCIM request without the right bearer secret");
        return ScimError::status(StatusCode::UNAUTHORIZED, "a valid bearer token is required").response();
    }
    let base = format!("{}{}", st.config.public_origin(), config.path);
    let rest = req.uri().path()[config.path.len()..].trim_start_matches('/').trim_end_matches('/').to_string();
    let segments: Vec<String> = rest.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let method = req.method().clone();
    // Reads see what another process (the admin CLI) wrote a moment ago; writes re-read inside their transaction.
    if method == Method::GET
        && let Err(e) = st.directory.refresh().await
    {
        tracing::error!(request_id, error = %e, "cannot re-read the directory");
        return ScimError::status(StatusCode::INTERNAL_SERVER_ERROR, "the store failed").response();
    }
    let q = query(req.uri().query());
    let call = format!("{method} {}", req.uri().path());
    let result = match (segments.first().map(|s| s.to_ascii_lowercase()).as_deref(), segments.get(1), segments.len()) {
        (Some("serviceproviderconfig"), None, 1) if method == Method::GET => {
            Ok(scim_json(StatusCode::OK, &model::service_provider_config(&base)))
        }
        (Some("resourcetypes"), id, _) if method == Method::GET && segments.len() <= 2 => {
            one_or_list(model::resource_types(&base), id.map(String::as_str), "id")
        }
        (Some("schemas"), id, _) if method == Method::GET && segments.len() <= 2 => {
            one_or_list(model::schemas(&base), id.map(String::as_str), "id")
        }
        (Some(endpoint @ ("users" | "groups")), id, n) if n <= 2 => {
            let kind = if endpoint == "users" { Kind::User } else { Kind::Group };
            let if_match = req.headers().get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
            let if_none_match =
                req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
            match (id.cloned(), method.clone()) {
                (None, Method::GET) => list(st, kind, &q, &base),
                (None, Method::POST) => match read_json(req).await {
                    Ok(body) => create(st, kind, body, &base, &call, request_id).await,
                    Err(e) => Err(e),
                },
                (Some(id), Method::GET) => get(st, kind, &id, &q, &base, if_none_match),
                (Some(id), Method::PUT) => match read_json(req).await {
                    Ok(body) => replace(st, kind, &id, body, if_match, &base, &call, request_id).await,
                    Err(e) => Err(e),
                },
                (Some(id), Method::PATCH) => match read_json(req).await {
                    Ok(body) => modify(st, kind, &id, body, if_match, &q, &base, &call, request_id).await,
                    Err(e) => Err(e),
                },
                (Some(id), Method::DELETE) => remove(st, kind, &id, if_match, &call, request_id).await,
                _ => Err(ScimError::status(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not supported here"))),
            }
        }
        (Some("bulk" | "me" | ".search"), _, _) => {
            Err(ScimError::status(StatusCode::NOT_IMPLEMENTED, "not supported by Postern; see /ServiceProviderConfig"))
        }
        _ => Err(ScimError::status(StatusCode::NOT_FOUND, "no such SCIM endpoint")),
    };
    let response = result.unwrap_or_else(|e| e.response());
    tracing::info!(request_id, scim = %call, status = response.status().as_u16(), "SCIM request");
    response
}

/// Decodes `%XX` escapes in a path segment (`+` stays a plus).
pub fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn one_or_list(items: Vec<Value>, id: Option<&str>, key: &str) -> Result<Response<Body>, ScimError> {
    match id {
        Some(id) => items
            .into_iter()
            .find(|i| i[key].as_str().is_some_and(|v| v.eq_ignore_ascii_case(id)))
            .map(|i| scim_json(StatusCode::OK, &i))
            .ok_or_else(|| ScimError::status(StatusCode::NOT_FOUND, format!("no {id}"))),
        None => Ok(scim_json(
            StatusCode::OK,
            &json!({"schemas": [model::LIST_RESPONSE], "totalResults": items.len(), "startIndex": 1, "itemsPerPage": items.len(), "Resources": items}),
        )),
    }
}

fn integer(v: &Option<String>, name: &str) -> Result<Option<i64>, ScimError> {
    match v {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ScimError::bad_request("invalidValue", format!("{name} must be an integer"))),
    }
}

fn list(st: &State, kind: Kind, q: &Query, base: &str) -> Result<Response<Body>, ScimError> {
    let filter = q.filter.as_deref().map(filter::parse).transpose()?;
    let start = integer(&q.start_index, "startIndex")?.unwrap_or(1).max(1) as usize;
    let count = integer(&q.count, "count")?.unwrap_or(MAX_PAGE as i64).clamp(0, MAX_PAGE as i64) as usize;
    let view = st.directory.view();
    let mut matched: Vec<(&Resource, Value)> = table(&view.data, kind)
        .values()
        .map(|r| &**r)
        .filter(|r| filter.as_ref().is_none_or(|f| !filter::surely_unmatched(r, f)))
        .map(|r| (r, model::render(kind, r, base)))
        .filter(|(_, v)| filter.as_ref().is_none_or(|f| filter::matches(v, f)))
        .collect();
    matched.sort_by(|(a, _), (b, _)| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    let total = matched.len();
    let page: Vec<Value> = matched
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|(_, v)| model::project(v, &q.attributes, &q.excluded))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &json!({"schemas": [model::LIST_RESPONSE], "totalResults": total, "startIndex": start, "itemsPerPage": page.len(), "Resources": page}),
    ))
}

fn get(
    st: &State,
    kind: Kind,
    id: &str,
    q: &Query,
    base: &str,
    if_none_match: Option<String>,
) -> Result<Response<Body>, ScimError> {
    let view = st.directory.view();
    let r = table(&view.data, kind).get(id).ok_or_else(|| ScimError::not_found(kind, id))?;
    if let Some(tags) = if_none_match
        && tags.split(',').map(str::trim).any(|t| t == "*" || t == model::etag(r))
    {
        let mut resp = Response::new(full(String::new()));
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(with_etag(resp, r));
    }
    let v = model::project(model::render(kind, r, base), &q.attributes, &q.excluded);
    Ok(with_etag(scim_json(StatusCode::OK, &v), r))
}

/// Commits `f` and audits what it did; returns the resource `id` as written.
async fn commit(
    st: &State,
    f: crate::store::ChangeFn<ScimError>,
    call: &str,
    request_id: &str,
) -> Result<Committed, ScimError> {
    match st.directory.write(f).await {
        Ok(c) => {
            audit(&c, call, request_id);
            Ok(c)
        }
        Err(WriteError::Refused(e)) => Err(e),
        Err(WriteError::Store(e)) => {
            tracing::error!(request_id, error = %e, "the store failed; nothing was written");
            Err(ScimError::status(StatusCode::INTERNAL_SERVER_ERROR, "the store failed; nothing was written"))
        }
    }
}

/// One audit line per person cut off or let back in.
pub fn audit(c: &Committed, call: &str, request_id: &str) {
    for r in &c.change.revoke {
        tracing::warn!(
            target: "audit", request_id, event = "user-revoked", user = r.user_name.as_deref().unwrap_or("-"),
            oid = r.oid.as_deref().unwrap_or("-"), directory_id = %r.key, reason = %r.reason, by = %call,
            sessions_ended = c.sessions_ended, "access revoked: sessions ended, tokens refused"
        );
    }
    for key in &c.change.unrevoke {
        tracing::warn!(target: "audit", request_id, event = "user-enabled", directory_id = %key, by = %call, "access restored");
    }
}

async fn create(
    st: &State,
    kind: Kind,
    body: Value,
    base: &str,
    call: &str,
    request_id: &str,
) -> Result<Response<Body>, ScimError> {
    let doc = model::normalize(kind, doc_of(body)?)?;
    let id = model::new_id();
    let now = st.clock.now();
    let by = call.to_string();
    let rid = id.clone();
    let c = commit(
        st,
        Box::new(move |data: &DirData| {
            check_unique(data, kind, &doc, None)?;
            if kind == Kind::Group {
                check_members(data, &doc)?;
            }
            let r = Resource { id: rid, doc, created: now, modified: now, version: 1 };
            Ok(put(data, kind, None, r, &by, now))
        }),
        call,
        request_id,
    )
    .await?;
    let r = table(&c.data, kind).get(&id).ok_or_else(|| ScimError::not_found(kind, &id))?;
    let mut resp = with_etag(scim_json(StatusCode::CREATED, &model::render(kind, r, base)), r);
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/{}/{id}", kind.endpoint())) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn replace(
    st: &State,
    kind: Kind,
    id: &str,
    body: Value,
    if_match: Option<String>,
    base: &str,
    call: &str,
    request_id: &str,
) -> Result<Response<Body>, ScimError> {
    let raw = doc_of(body)?;
    // A replacement that leaves `active` out does not re-enable anyone: the user keeps their state.
    let names_active = model::key_ci(&raw, "active").is_some();
    let mut doc = model::normalize(kind, raw)?;
    let now = st.clock.now();
    let (by, rid) = (call.to_string(), id.to_string());
    let c = commit(
        st,
        Box::new(move |data: &DirData| {
            let before = table(data, kind).get(&rid).ok_or_else(|| ScimError::not_found(kind, &rid))?;
            precondition(&if_match, before)?;
            if kind == Kind::User && !names_active {
                doc.insert("active".into(), Value::Bool(before.active()));
            }
            check_unique(data, kind, &doc, Some(&rid))?;
            if kind == Kind::Group {
                check_members(data, &doc)?;
            }
            let after = Resource { doc, modified: now, version: before.version + 1, ..(**before).clone() };
            Ok(put(data, kind, Some(before), after, &by, now))
        }),
        call,
        request_id,
    )
    .await?;
    let r = table(&c.data, kind).get(id).ok_or_else(|| ScimError::not_found(kind, id))?;
    Ok(with_etag(scim_json(StatusCode::OK, &model::render(kind, r, base)), r))
}

#[allow(clippy::too_many_arguments)]
async fn modify(
    st: &State,
    kind: Kind,
    id: &str,
    body: Value,
    if_match: Option<String>,
    q: &Query,
    base: &str,
    call: &str,
    request_id: &str,
) -> Result<Response<Body>, ScimError> {
    let ops = patch::parse(&body)?;
    let now = st.clock.now();
    let (by, rid) = (call.to_string(), id.to_string());
    let c = commit(
        st,
        Box::new(move |data: &DirData| {
            let before = table(data, kind).get(&rid).ok_or_else(|| ScimError::not_found(kind, &rid))?;
            precondition(&if_match, before)?;
            let mut doc = before.doc.clone();
            patch::apply(&mut doc, &ops)?;
            // Removing `active` does not re-enable anyone: the user keeps their state.
            if kind == Kind::User && model::key_ci(&doc, "active").is_none() {
                doc.insert("active".into(), Value::Bool(before.active()));
            }
            let doc = model::normalize(kind, doc)?;
            if doc == before.doc {
                // Entra re-sends values it already set: nothing to write, no new version.
                return Ok(Change::default());
            }
            check_unique(data, kind, &doc, Some(&rid))?;
            if kind == Kind::Group {
                check_members(data, &doc)?;
            }
            let after = Resource { doc, modified: now, version: before.version + 1, ..(**before).clone() };
            Ok(put(data, kind, Some(before), after, &by, now))
        }),
        call,
        request_id,
    )
    .await?;
    let r = table(&c.data, kind).get(id).ok_or_else(|| ScimError::not_found(kind, id))?;
    if kind == Kind::Group && q.attributes.is_empty() {
        let mut resp = Response::new(full(String::new()));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        return Ok(with_etag(resp, r));
    }
    let v = model::project(model::render(kind, r, base), &q.attributes, &q.excluded);
    Ok(with_etag(scim_json(StatusCode::OK, &v), r))
}

async fn remove(
    st: &State,
    kind: Kind,
    id: &str,
    if_match: Option<String>,
    call: &str,
    request_id: &str,
) -> Result<Response<Body>, ScimError> {
    let now = st.clock.now();
    let (by, rid) = (call.to_string(), id.to_string());
    commit(
        st,
        Box::new(move |data: &DirData| {
            let before = table(data, kind).get(&rid).ok_or_else(|| ScimError::not_found(kind, &rid))?;
            precondition(&if_match, before)?;
            let mut change = Change::default();
            match kind {
                Kind::User => {
                    user_transition(data, Some(before), None, &by, now, &mut change);
                    change.delete_users.push(rid.clone());
                }
                Kind::Group => {
                    change.delete_groups.push(rid.clone());
                    // A group may be a member of another; leave no dangling reference.
                    for g in data.groups.values().filter(|g| g.id != rid && g.member_ids().contains(&rid)) {
                        let mut g = (**g).clone();
                        if let Some(Value::Array(m)) = g.doc.get_mut("members") {
                            m.retain(|x| x.get("value").and_then(Value::as_str) != Some(rid.as_str()));
                            if m.is_empty() {
                                g.doc.remove("members");
                            }
                        }
                        g.version += 1;
                        g.modified = now;
                        change.put_groups.push(g);
                    }
                }
            }
            Ok(change)
        }),
        call,
        request_id,
    )
    .await?;
    let mut resp = Response::new(full(String::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "s3cret-s3cret"));
        for (value, ok) in [
            ("Bearer s3cret-s3cret", true),
            ("bearer s3cret-s3cret", true),
            ("Bearer s3cret-s3cre", false),
            ("Bearer s3cret-s3cret2", false),
            ("Basic s3cret-s3cret", false),
            ("Bearer ", false),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(authorized(&h, "s3cret-s3cret"), ok, "{value}");
        }
    }

    #[test]
    fn the_base_path_owns_only_itself_and_below() {
        assert!(owns("/scim/v2", "/scim/v2"));
        assert!(owns("/scim/v2/Users", "/scim/v2"));
        assert!(!owns("/scim/v2x", "/scim/v2"));
        assert!(!owns("/scim", "/scim/v2"));
    }
}
