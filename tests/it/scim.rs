//! The SCIM endpoint as Entra's provisioning service uses it: a directory of users and groups written over
//! SCIM 2.0, and instant offboarding — deactivating or deleting a user ends their live sessions and refuses
//! their bearer tokens from the next request on; group changes apply to live sessions from the next request.
//! Also every Entra quirk, the protocol's errors, and the endpoint's authentication.

use std::time::Instant;

use http::{Method, StatusCode};
use postern::demo::provider::{GROUP_ADMINS, GROUP_ENG};
use serde_json::{Value, json};

use crate::support::from_files::{Options, Postern, SCIM_CONFIG, SCIM_TOKEN, start_postern};
use crate::support::*;

/// Postern with the SCIM endpoint at `/scim/v2`.
pub async fn start_with_scim() -> Postern {
    start_postern(Options { config_extra: SCIM_CONFIG.to_string(), ..Options::default() }).await
}

/// A SCIM client with the secret.
pub struct Scim {
    base: String,
    client: Client,
}

impl Scim {
    pub fn new(postern: &Postern) -> Scim {
        Scim { base: postern.at("/scim/v2"), client: Client::new() }
    }

    pub fn at(url: &str) -> Scim {
        Scim { base: format!("{url}/scim/v2"), client: Client::new() }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer(SCIM_TOKEN)
            .header("accept", "application/scim+json");
        if let Some(b) = body {
            r = r.header("content-type", "application/scim+json").body(b.to_string());
        }
        r.send().await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, ops: Value) -> Resp {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a user as Entra does; returns its id.
    pub async fn create_user(&self, user_name: &str, external_id: &str) -> String {
        let r = self
            .post(
                "/Users",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                    "externalId": external_id, "userName": user_name, "active": true,
                    "emails": [{"primary": true, "type": "work", "value": user_name}],
                    "meta": {"resourceType": "User"},
                    "name": {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"},
                    "roles": []
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r.json()["id"].as_str().expect("an id").to_string()
    }

    /// Creates a group as Entra does (no members); returns its id.
    pub async fn create_group(&self, name: &str, external_id: &str) -> String {
        let r = self
            .post(
                "/Groups",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                    "externalId": external_id, "displayName": name, "meta": {"resourceType": "Group"}
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r.json()["id"].as_str().expect("an id").to_string()
    }

    pub async fn add_member(&self, group: &str, user: &str) {
        let r = self
            .patch(
                &format!("/Groups/{group}"),
                json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": user}]}]),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    }
}

fn assert_scim_error(r: &Resp, status: StatusCode, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    let body = r.json();
    assert_eq!(body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]), "{body}");
    assert_eq!(body["status"], status.as_u16().to_string(), "{body}");
    match scim_type {
        Some(t) => assert_eq!(body["scimType"], t, "{body}"),
        None => assert!(body.get("scimType").is_none(), "{body}"),
    }
}

async fn api_status(client: &Client, postern: &Postern) -> StatusCode {
    client.get(postern.at("/")).api().send().await.status
}

#[tokio::test]
async fn an_entra_provisioning_sequence_cuts_a_signed_in_user_off_at_once_and_lets_them_back() {
    let postern = start_with_scim().await;
    let scim = Scim::new(&postern);
    let bob = user("bob");

    // Test connection: a filter for a user that does not exist is an empty ListResponse.
    let r = scim.get("/Users?filter=userName+eq+%22Test_User_00aa00aa-0000-4000-8000-000000000000%22").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    let body = r.json();
    assert_eq!(body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));
    assert_eq!(body["totalResults"], 0);
    assert_eq!(body["Resources"], json!([]));

    // Create the user and the group, add the user to the group.
    let id = scim.create_user(bob.email, bob.oid).await;
    let eng = scim.create_group("eng", GROUP_ENG).await;
    scim.add_member(&eng, &id).await;

    // Bob signs in; his groups now come from the directory.
    let browser = sign_in_at(&postern.url, "bob").await;
    let r = browser.get(postern.at("/")).api().send().await;
    assert_eq!(r.upstream().get("x-forwarded-groups"), Some(GROUP_ENG));

    // Entra disables him (legacy format: op "Replace", value "False").
    let r = scim.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    let deactivated = Instant::now();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["active"], false);

    // His live session's next request is refused.
    let refused = browser.get(postern.at("/")).api().send().await;
    let cut_off_after = deactivated.elapsed();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text());
    eprintln!("time from the deactivating SCIM response to the first refused request: {cut_off_after:?}");
    let r = browser.get(postern.at("/")).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND, "a browser is sent to sign in");
    assert!(r.location().contains("/authorize?"), "{}", r.location());

    // He cannot sign in again while disabled; inactive users stay readable and findable.
    let again = Client::new();
    let r = sign_in_flow(&again, &postern.url, "/", "bob").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("user-revoked"), "{}", r.text());
    assert!(r.sets_cookie(SESSION_COOKIE).is_none());
    let r = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["active"], false);
    let r = scim
        .get(&format!("/Users?filter={}", encode(&format!("userName eq \"{}\" and active eq false", bob.email))))
        .await;
    assert_eq!(r.json()["totalResults"], 1, "{}", r.text());

    // Neither removing `active` nor a PUT without it lets him back in.
    let r = scim.patch(&format!("/Users/{id}"), json!([{"op": "remove", "path": "active"}])).await;
    assert_eq!(r.json()["active"], false, "{}", r.text());
    let r = scim
        .send(Method::PUT, &format!("/Users/{id}"), Some(json!({"userName": bob.email, "externalId": bob.oid})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["active"], false);
    assert_eq!(sign_in_flow(&Client::new(), &postern.url, "/", "bob").await.status, StatusCode::FORBIDDEN);

    // Re-enabled (compliant format), he signs in again.
    let r = scim.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": true}])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let browser = sign_in_at(&postern.url, "bob").await;
    assert_eq!(api_status(&browser, &postern).await, StatusCode::OK);

    // Hard delete: 204, gone, his session ends, the group no longer lists him.
    let r = scim.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_scim_error(&scim.get(&format!("/Users/{id}")).await, StatusCode::NOT_FOUND, None);
    assert_eq!(api_status(&browser, &postern).await, StatusCode::UNAUTHORIZED);
    let r = scim.get(&format!("/Groups/{eng}")).await;
    assert!(r.json().get("members").is_none(), "{}", r.text());
    // Other people are untouched.
    let alice = sign_in_at(&postern.url, "alice").await;
    assert_eq!(api_status(&alice, &postern).await, StatusCode::OK);
}

#[tokio::test]
async fn group_changes_apply_to_live_sessions_from_the_next_request() {
    let postern = start_with_scim().await;
    let scim = Scim::new(&postern);
    let bob = user("bob");
    let browser = sign_in_at(&postern.url, "bob").await;
    // The token says eng, and the directory does not know bob yet: the token decides.
    assert_eq!(api_status(&browser, &postern).await, StatusCode::OK);

    let id = scim.create_user(bob.email, bob.oid).await;
    // Known to the directory, in no group: the demo route (eng only) refuses him.
    assert_eq!(api_status(&browser, &postern).await, StatusCode::FORBIDDEN);

    let eng = scim.create_group("eng", GROUP_ENG).await;
    scim.add_member(&eng, &id).await;
    let r = browser.get(postern.at("/")).api().send().await;
    assert_eq!(r.upstream().get("x-forwarded-groups"), Some(GROUP_ENG));
    assert_eq!(assertion_groups(&r), json!([GROUP_ENG]));

    let admins = scim.create_group("admins", GROUP_ADMINS).await;
    scim.add_member(&admins, &id).await;
    let r = browser.get(postern.at("/admin")).api().send().await;
    assert_eq!(r.status, StatusCode::OK, "now an admin");
    // The signed assertion follows at once too: it is never reused across a group change.
    let r = browser.get(postern.at("/")).api().send().await;
    assert_eq!(assertion_groups(&r), json!([GROUP_ENG, GROUP_ADMINS]));

    let r = scim
        .patch(&format!("/Groups/{admins}"), json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(browser.get(postern.at("/admin")).api().send().await.status, StatusCode::FORBIDDEN);
}

/// The `groups` claim of the identity assertion the upstream received.
fn assertion_groups(r: &Resp) -> Value {
    use base64::Engine as _;
    let jwt = r.upstream().get("x-postern-jwt-assertion").expect("an assertion").to_string();
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("JSON claims");
    claims["groups"].clone()
}

#[tokio::test]
async fn with_directory_groups_off_tokens_keep_their_groups_but_revocation_still_applies() {
    let postern = start_postern(Options {
        config_extra: format!("{SCIM_CONFIG}\n[directory]\ngroups = false\n"),
        ..Options::default()
    })
    .await;
    let scim = Scim::new(&postern);
    let bob = user("bob");
    let browser = sign_in_at(&postern.url, "bob").await;
    let id = scim.create_user(bob.email, bob.oid).await;

    assert_eq!(api_status(&browser, &postern).await, StatusCode::OK, "the token's eng group still counts");
    scim.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!(api_status(&browser, &postern).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_deactivated_users_bearer_tokens_are_refused_even_when_cached_until_re_enabled() {
    let postern = start_with_scim().await;
    let scim = Scim::new(&postern);
    let provider = &postern.stack.provider;
    let oid = "0b7a6a52-1111-4222-8333-944455556666";
    let token = provider.mint_access_token(json!({
        "sub": "svc", "oid": oid, "tid": provider.config().tenant_id, "roles": ["Deploy.Write"],
        "preferred_username": "deployer@example.com"
    }));
    let client = Client::new();
    let call = || client.get(postern.at("/")).bearer(&token).send();
    assert_eq!(call().await.status, StatusCode::OK, "valid, and now cached");

    let id = scim.create_user("deployer@example.com", oid).await;
    assert_eq!(call().await.status, StatusCode::OK, "known and active");
    let r = scim.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!(r.status, StatusCode::OK);

    let r = call().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.header("www-authenticate").is_some_and(|c| c.contains("invalid_token")));
    assert!(r.text().contains("revoked"), "{}", r.text());

    scim.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "active", "value": "True"}])).await;
    assert_eq!(call().await.status, StatusCode::OK);
    scim.delete(&format!("/Users/{id}")).await;
    assert_eq!(call().await.status, StatusCode::UNAUTHORIZED, "deleted: refused until created again");
    scim.create_user("deployer@example.com", oid).await;
    assert_eq!(call().await.status, StatusCode::OK);
}

#[tokio::test]
async fn entras_patch_quirks_are_understood() {
    let postern = start_with_scim().await;
    let scim = Scim::new(&postern);
    const EXT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    // A create with explicit nulls and the manager as a bare string inside the extension.
    let r = scim
        .post(
            "/Users?aadOptscim062020",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
                "userName": "quirky@example.com", "externalId": "q-1", "active": "True", "addresses": null, "title": null,
                "emails": [{"primary": "True", "type": "work", "value": "old@example.com"}],
                EXT: {"manager": "mgr-1", "department": "R&D"}
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["active"], true);
    assert!(created.get("title").is_none() && created.get("addresses").is_none());
    assert_eq!(created[EXT]["manager"], json!({"value": "mgr-1"}));
    assert_eq!(created["emails"][0]["primary"], true);
    assert!(r.header("location").is_some_and(|l| l.ends_with(&format!("/scim/v2/Users/{id}"))));
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(created["meta"]["version"], "W/\"1\"");

    // Legacy: one Replace per path, with a value filter and an extension URN path.
    let r = scim
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "Replace", "path": "displayName", "value": "Pvlo"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com"},
                {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
                {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
                {"op": "Replace", "path": format!("{EXT}:employeeNumber"), "value": "Eqpj"},
                {"op": "Add", "path": "nickName", "value": "Babs"},
                {"op": "Add", "path": format!("{EXT}:manager"), "value": "271"}
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let u = r.json();
    assert_eq!(u["displayName"], "Pvlo");
    assert_eq!(u["emails"], json!([{"primary": true, "type": "work", "value": "new@example.com"}]));
    assert_eq!(u["name"]["givenName"], "Gtfd");
    assert_eq!(u["name"]["familyName"], "Pkqf");
    assert_eq!(u["nickName"], "Babs");
    assert_eq!(u[EXT]["employeeNumber"], "Eqpj");
    assert_eq!(u[EXT]["manager"], json!({"value": "271"}));
    assert_eq!(u[EXT]["department"], "R&D");
    assert_eq!(u["meta"]["version"], "W/\"2\"");

    // Compliant: a path-less replace with dotted and URN keys.
    let r = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"displayName": "Bjfe", "name.givenName": "Kkom", format!("{EXT}:employeeNumber"): "Aklq"}}]),
        )
        .await;
    let u = r.json();
    assert_eq!((u["displayName"].as_str(), u["name"]["givenName"].as_str()), (Some("Bjfe"), Some("Kkom")));
    assert_eq!(u["name"]["familyName"], "Pkqf", "sub-attributes not named are kept");
    assert_eq!(u[EXT]["employeeNumber"], "Aklq");

    // The manager as {value} and as [{value}], then removed without a value.
    for value in [json!({"value": "m2"}), json!([{"value": "m3", "$ref": null}])] {
        scim.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "manager", "value": value}])).await;
    }
    let r = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": format!("{EXT}:manager"), "value": {"value": "m4"}}]),
        )
        .await;
    assert_eq!(r.json()[EXT]["manager"], json!({"value": "m4"}));
    let r = scim.patch(&format!("/Users/{id}"), json!([{"op": "Remove", "path": format!("{EXT}:manager")}])).await;
    assert!(r.json()[EXT].get("manager").is_none(), "{}", r.text());

    // Groups: rename, members added, removed by value list and by filter; lookups without members.
    let g = scim.create_group("Team", "g-ext-1").await;
    let other = scim.create_user("other@example.com", "q-2").await;
    let r =
        scim.patch(&format!("/Groups/{g}"), json!([{"op": "Replace", "path": "displayName", "value": "Team 2"}])).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    scim.add_member(&g, &id).await;
    scim.add_member(&g, &other).await;
    let r = scim.get(&format!("/Groups/{g}?excludedAttributes=members")).await;
    assert!(r.json().get("members").is_none());
    assert_eq!(r.json()["displayName"], "Team 2");
    let r = scim.get(&format!("/Groups/{g}")).await;
    assert_eq!(r.json()["members"].as_array().map(Vec::len), Some(2));
    let r =
        scim.get(&format!("/Groups?excludedAttributes=members&filter={}", encode("displayName eq \"team 2\""))).await;
    assert_eq!(r.json()["totalResults"], 1);
    assert!(r.json()["Resources"][0].get("members").is_none());
    scim.patch(&format!("/Groups/{g}"), json!([{"op": "Remove", "path": "members", "value": [{"value": id}]}])).await;
    scim.patch(&format!("/Groups/{g}"), json!([{"op": "remove", "path": format!("members[value eq \"{other}\"]")}]))
        .await;
    let r = scim.get(&format!("/Groups/{g}")).await;
    assert!(r.json().get("members").is_none(), "{}", r.text());
    // PUT replaces the whole group.
    let r = scim
        .send(
            Method::PUT,
            &format!("/Groups/{g}"),
            Some(json!({"displayName": "Team 3", "members": [{"value": other}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["members"], json!([{"value": other}]));
    assert!(r.json().get("externalId").is_none());
    assert_eq!(scim.delete(&format!("/Groups/{g}")).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_requests_get_scim_errors_and_change_nothing() {
    let postern = start_with_scim().await;
    let scim = Scim::new(&postern);
    let id = scim.create_user("ann@example.com", "ann-1").await;

    // Uniqueness: userName ignoring case, externalId.
    let r = scim.post("/Users", json!({"userName": "ANN@example.com"})).await;
    assert_scim_error(&r, StatusCode::CONFLICT, Some("uniqueness"));
    let r = scim.post("/Users", json!({"userName": "other@example.com", "externalId": "ann-1"})).await;
    assert_scim_error(&r, StatusCode::CONFLICT, Some("uniqueness"));
    let g = scim.create_group("eng", "g1").await;
    assert_scim_error(
        &scim.post("/Groups", json!({"displayName": "ENG"})).await,
        StatusCode::CONFLICT,
        Some("uniqueness"),
    );

    for (method, path, body, status, scim_type) in [
        (
            Method::POST,
            "/Users",
            Some(json!({"displayName": "no user name"})),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Users",
            Some(json!({"userName": "x@example.com", "active": "maybe"})),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (Method::POST, "/Users", Some(json!(["not", "an", "object"])), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "g", "members": [{"value": "nobody"}]})),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (Method::GET, "/Users?filter=userName+zz+%22x%22", None, StatusCode::BAD_REQUEST, Some("invalidFilter")),
        (Method::GET, "/Users?filter=%28%28%28", None, StatusCode::BAD_REQUEST, Some("invalidFilter")),
        (Method::GET, "/Users?startIndex=abc", None, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (Method::GET, "/Users/does-not-exist", None, StatusCode::NOT_FOUND, None),
        (Method::DELETE, "/Groups/does-not-exist", None, StatusCode::NOT_FOUND, None),
        (Method::GET, "/Nothing", None, StatusCode::NOT_FOUND, None),
        (Method::POST, "/Bulk", Some(json!({})), StatusCode::NOT_IMPLEMENTED, None),
    ] {
        let r = scim.send(method.clone(), path, body).await;
        assert_scim_error(&r, status, scim_type);
    }
    // Too large.
    let r = Client::new()
        .post(postern.at("/scim/v2/Users"))
        .bearer(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body(format!("{{\"userName\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)))
        .send()
        .await;
    assert_scim_error(&r, StatusCode::PAYLOAD_TOO_LARGE, None);
    // A Tenant URL written with a trailing slash still reaches the endpoints.
    let r = Client::new().get(postern.at("/scim/v2//Users/")).bearer(SCIM_TOKEN).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Not JSON at all.
    let r = Client::new()
        .post(postern.at("/scim/v2/Users"))
        .bearer(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body("{\"userName\": ")
        .send()
        .await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST, Some("invalidSyntax"));

    // A PATCH whose second operation is bad applies nothing, not even the first.
    let before = scim.get(&format!("/Users/{id}")).await.json();
    for ops in [
        json!([{"op": "Replace", "path": "displayName", "value": "Changed"}, {"op": "Frobnicate", "path": "x", "value": 1}]),
        json!([{"op": "Replace", "path": "displayName", "value": "Changed"}, {"op": "Replace", "path": "active", "value": "perhaps"}]),
        json!([{"op": "Replace", "path": "displayName", "value": "Changed"}, {"op": "Add", "path": "emails[type eq", "value": "x"}]),
        json!([{"op": "Replace", "path": "displayName", "value": "Changed"}, {"op": "Replace", "path": "id", "value": "mine"}]),
        json!([{"op": "Replace", "path": "userName", "value": "other@example.com"}, {"op": "Remove"}]),
    ] {
        let r = scim.patch(&format!("/Users/{id}"), ops.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{ops}: {}", r.text());
        assert!(r.json()["scimType"].is_string(), "{}", r.text());
    }
    assert_eq!(scim.get(&format!("/Users/{id}")).await.json(), before, "nothing was applied");
    // A PATCH making userName collide is a conflict, and changes nothing.
    scim.create_user("bea@example.com", "bea-1").await;
    let r = scim
        .patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "userName", "value": "Bea@example.com"}]))
        .await;
    assert_scim_error(&r, StatusCode::CONFLICT, Some("uniqueness"));
    assert_eq!(scim.get(&format!("/Users/{id}")).await.json(), before);

    // ETags: If-None-Match with the current version is 304; If-Match with an old one is 412.
    let etag = scim.get(&format!("/Users/{id}")).await.header("etag").unwrap().to_string();
    let r = scim
        .client
        .get(format!("{}/Users/{id}", scim.base))
        .bearer(SCIM_TOKEN)
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = scim
        .client
        .request(Method::PATCH, format!("{}/Users/{id}", scim.base))
        .bearer(SCIM_TOKEN)
        .header("if-match", "W/\"999\"")
        .body(json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}).to_string())
        .send()
        .await;
    assert_scim_error(&r, StatusCode::PRECONDITION_FAILED, None);
    let r = scim
        .client
        .request(Method::PATCH, format!("{}/Users/{id}", scim.base))
        .bearer(SCIM_TOKEN)
        .header("if-match", &etag)
        .body(json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}).to_string())
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_ne!(r.header("etag"), Some(etag.as_str()), "a change makes a new version");
    // The group is still there and unchanged by the failed writes.
    assert_eq!(scim.get(&format!("/Groups/{g}")).await.json()["meta"]["version"], "W/\"1\"");
}

#[tokio::test]
async fn the_scim_endpoint_refuses_requests_without_the_exact_secret() {
    let postern = start_with_scim().await;
    let url = postern.at("/scim/v2/Users");
    let almost = &SCIM_TOKEN[..SCIM_TOKEN.len() - 1];
    for auth in [
        None,
        Some(format!("Bearer {almost}")),
        Some(format!("Bearer {SCIM_TOKEN}x")),
        Some(format!("Basic {SCIM_TOKEN}")),
        Some("Bearer".to_string()),
    ] {
        let client = Client::new();
        let mut r = client.get(url.clone()).api();
        if let Some(a) = &auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await;
        assert_scim_error(&r, StatusCode::UNAUTHORIZED, None);
        assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{auth:?}");
    }
    // A signed-in session is not a SCIM credential either.
    let alice = sign_in_at(&postern.url, "alice").await;
    assert_eq!(alice.get(url.clone()).api().send().await.status, StatusCode::UNAUTHORIZED);
    // Nor is a valid bearer token of the sign-in provider.
    let token = client_credentials_token(&postern.stack.provider).await;
    assert_eq!(Client::new().get(url).bearer(&token).send().await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_scim_section_the_path_is_not_an_endpoint() {
    let postern = start_postern(Options::default()).await;
    let r = Client::new().get(postern.at("/scim/v2/Users")).bearer(SCIM_TOKEN).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a protected route like any other: {}", r.text());
    assert_ne!(r.header("content-type"), Some("application/scim+json"));
}

#[tokio::test]
async fn lists_filter_with_and_or_and_page_with_start_index_and_count() {
    let postern = start_with_scim().await;
    let scim = Scim::new(&postern);
    for i in 0..5 {
        scim.create_user(&format!("user{i}@example.com"), &format!("ext-{i}")).await;
    }
    let r = scim.get("/Users?startIndex=2&count=2").await;
    let body = r.json();
    assert_eq!(body["totalResults"], 5);
    assert_eq!(body["startIndex"], 2);
    assert_eq!(body["itemsPerPage"], 2);
    assert_eq!(body["Resources"][0]["userName"], "user1@example.com");
    assert_eq!(body["Resources"][1]["userName"], "user2@example.com");
    let r = scim.get("/Users?startIndex=5&count=10").await;
    assert_eq!(r.json()["Resources"].as_array().map(Vec::len), Some(1));
    let r = scim.get("/Users?count=0").await;
    assert_eq!((r.json()["totalResults"].as_u64(), r.json()["Resources"].as_array().map(Vec::len)), (Some(5), Some(0)));

    let f = encode("userName eq \"user1@example.com\" or externalId eq \"ext-3\"");
    let r = scim.get(&format!("/Users?filter={f}")).await;
    assert_eq!(r.json()["totalResults"], 2, "{}", r.text());
    let f = encode("userName sw \"user\" and (externalId eq \"ext-4\" or externalId eq \"ext-0\") and active eq true");
    let r = scim.get(&format!("/Users?filter={f}&attributes=userName")).await;
    let body = r.json();
    assert_eq!(body["totalResults"], 2, "{body}");
    assert!(body["Resources"][0].get("emails").is_none(), "attributes= limits what is returned");
    assert!(body["Resources"][0]["id"].is_string() && body["Resources"][0]["meta"].is_object());
    let r = scim.get(&format!("/Users?filter={}", encode("externalId eq \"EXT-1\""))).await;
    assert_eq!(r.json()["totalResults"], 0, "externalId is case-exact");
}

#[tokio::test]
async fn discovery_documents_describe_the_endpoint() {
    let postern = start_with_scim().await;
    let scim = Scim::new(&postern);
    let spc = scim.get("/ServiceProviderConfig").await.json();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], true);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], false);
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let types = scim.get("/ResourceTypes").await.json();
    assert_eq!(types["totalResults"], 2);
    assert_eq!(scim.get("/ResourceTypes/User").await.json()["endpoint"], "/Users");
    let schemas = scim.get("/Schemas").await.json();
    let ids: Vec<&str> = schemas["Resources"].as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    assert!(ids.contains(&"urn:ietf:params:scim:schemas:core:2.0:User"), "{ids:?}");
    assert!(ids.contains(&"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
    assert!(ids.contains(&"urn:ietf:params:scim:schemas:core:2.0:Group"));
    let user = scim.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").await;
    assert_eq!(user.status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_scim_writes_and_sign_ins_all_land() {
    let postern = start_with_scim().await;
    let scim = std::sync::Arc::new(Scim::new(&postern));
    let group = scim.create_group("all", "g-all").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let scim = scim.clone();
        let group = group.clone();
        tasks.push(tokio::spawn(async move {
            let id = scim.create_user(&format!("c{i}@example.com"), &format!("c-{i}")).await;
            scim.add_member(&group, &id).await;
            id
        }));
    }
    let mut sign_ins = Vec::new();
    for name in ["alice", "bob", "carol", "alice", "bob"] {
        let url = postern.url.clone();
        sign_ins.push(tokio::spawn(async move { sign_in_at(&url, name).await }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("a SCIM writer"));
    }
    for s in sign_ins {
        let browser = s.await.expect("a sign-in");
        assert_ne!(api_status(&browser, &postern).await, StatusCode::UNAUTHORIZED);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16);
    assert_eq!(scim.get("/Users?count=100").await.json()["totalResults"], 16);
    let members = scim.get(&format!("/Groups/{group}")).await.json()["members"].as_array().map(Vec::len);
    assert_eq!(members, Some(16), "no membership was lost to a concurrent write");
}
