//! Every Entra-specific token rule in one place, as pure functions: the multi-tenant `{tenantid}` issuer
//! template (substitute the token's `tid`, then require an exact `iss` match), the tenant allow-list, the
//! per-key `issuer` of Entra's key documents, guests (`acct`, `idp`), and the group-overage indicators.
//! Never logs a token.

use serde_json::{Map, Value};

use crate::jwt::TokenError;

/// The placeholder in the issuer of Entra's `organizations` and `common` discovery documents.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// True when `issuer` is a multi-tenant template (contains `{tenantid}`, in any case).
pub fn is_template(issuer: &str) -> bool {
    find_placeholder(issuer).is_some()
}

fn find_placeholder(issuer: &str) -> Option<usize> {
    let placeholder = TENANT_PLACEHOLDER.as_bytes();
    issuer.as_bytes().windows(placeholder.len()).position(|w| w.eq_ignore_ascii_case(placeholder))
}

/// `template` with `{tenantid}` replaced by `tid`; `template` itself when it has no placeholder.
pub fn substitute(template: &str, tid: &str) -> String {
    match find_placeholder(template) {
        Some(at) => format!("{}{tid}{}", &template[..at], &template[at + TENANT_PLACEHOLDER.len()..]),
        None => template.to_string(),
    }
}

/// True when `iss` could come from `configured` (an exact issuer or a template): the cheap test that picks
/// which issuer's keys verify a bearer token. The exact checks come after the signature.
pub fn could_match(configured: &str, iss: &str) -> bool {
    match find_placeholder(configured) {
        None => configured == iss,
        Some(at) => {
            let (prefix, suffix) = (&configured[..at], &configured[at + TENANT_PLACEHOLDER.len()..]);
            iss.len() > prefix.len() + suffix.len()
                && iss.starts_with(prefix)
                && iss.ends_with(suffix)
                && is_tenant_id(&iss[prefix.len()..iss.len() - suffix.len()])
        }
    }
}

/// True for a tenant id in the form Entra puts in `tid`: a GUID (8-4-4-4-12 hexadecimal digits).
pub fn is_tenant_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes()
            .enumerate()
            .all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() })
}

fn tid(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("tid").and_then(Value::as_str)
}

/// The exact issuer this token must carry. For a template, the token's `tid` is substituted (Microsoft's
/// rule for tenant-independent metadata); a token without a GUID `tid` cannot match a template.
pub fn expected_issuer(configured: &str, claims: &Map<String, Value>) -> Result<String, TokenError> {
    if !is_template(configured) {
        return Ok(configured.to_string());
    }
    match tid(claims) {
        Some(t) if is_tenant_id(t) => Ok(substitute(configured, t)),
        Some(_) => Err(TokenError::WrongIssuer),
        None => Err(TokenError::MissingClaim("tid")),
    }
}

/// The tenant allow-list: when `allowed` is not empty, `tid` must be in it (GUIDs compare case-insensitively).
/// A template issuer with an empty list admits nobody: any Entra tenant could otherwise sign in.
pub fn check_tenant(configured: &str, allowed: &[String], claims: &Map<String, Value>) -> Result<(), TokenError> {
    if allowed.is_empty() {
        return if is_template(configured) { Err(TokenError::TenantNotAllowed) } else { Ok(()) };
    }
    match tid(claims) {
        Some(t) if allowed.iter().any(|a| a.eq_ignore_ascii_case(t)) => Ok(()),
        _ => Err(TokenError::TenantNotAllowed),
    }
}

/// Whether a key whose JWKS entry names `key_issuer` may verify a token from `iss` (tenant `tid`). Entra's key
/// documents give each key an `issuer`: a template key serves any tenant after substitution, a key with a
/// concrete issuer (such as the consumer-accounts tenant) only that issuer. Keys without one are the
/// issuer's own keys (the configured key set) and serve it.
pub fn key_serves(key_issuer: Option<&str>, iss: &str, tid: Option<&str>) -> bool {
    match key_issuer {
        None => true,
        Some(k) if is_template(k) => tid.is_some_and(|t| substitute(k, t) == iss),
        Some(k) => k == iss,
    }
}

/// A guest: Entra's optional `acct` claim is 1, or the identity provider (`idp`) is not the tenant itself.
/// Members carry no `idp`, or one naming their own tenant (`https://sts.windows.net/{tid}/`).
pub fn is_guest(claims: &Map<String, Value>) -> bool {
    let acct = claims.get("acct");
    if acct.and_then(Value::as_u64) == Some(1) || acct.and_then(Value::as_str) == Some("1") {
        return true;
    }
    let Some(idp) = claims.get("idp").and_then(Value::as_str) else {
        return false;
    };
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    if idp == iss {
        return false;
    }
    match tid(claims) {
        Some(t) => {
            let own = [format!("https://sts.windows.net/{t}/"), format!("https://login.microsoftonline.com/{t}/v2.0")];
            !own.iter().any(|o| o == idp)
        }
        None => true,
    }
}

/// True when the token says its groups did not fit: `_claim_names.groups` (JWT overage, more than 200
/// groups) or `hasgroups: true` (implicit flow). The `groups` claim is then absent or incomplete, and the
/// legacy endpoint in `_claim_sources` is never called: Microsoft Graph is asked instead.
pub fn has_group_overage(claims: &Map<String, Value>) -> bool {
    let names = claims.get("_claim_names").and_then(|n| n.get("groups")).is_some();
    let hasgroups = matches!(claims.get("hasgroups"), Some(Value::Bool(true)))
        || claims.get("hasgroups").and_then(Value::as_str) == Some("true");
    names || hasgroups
}

/// True for an app-only token (client credentials): Entra's `idtyp` is `app`. Groups are looked up for users.
pub fn is_app_only(claims: &Map<String, Value>) -> bool {
    claims.get("idtyp").and_then(Value::as_str) == Some("app")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_template_takes_the_tokens_tid_and_nothing_else() {
        assert_eq!(substitute(T, TID), format!("https://login.microsoftonline.com/{TID}/v2.0"));
        assert_eq!(substitute("https://sts.windows.net/{TenantId}/", TID), format!("https://sts.windows.net/{TID}/"));
        assert_eq!(expected_issuer(T, &claims(json!({"tid": TID}))).unwrap(), substitute(T, TID));
        assert_eq!(expected_issuer(T, &claims(json!({}))), Err(TokenError::MissingClaim("tid")));
        assert_eq!(expected_issuer(T, &claims(json!({"tid": "evil/x"}))), Err(TokenError::WrongIssuer));
        assert_eq!(expected_issuer("https://idp", &claims(json!({"tid": TID}))).unwrap(), "https://idp");
        assert!(could_match(T, &substitute(T, TID)));
        assert!(!could_match(T, "https://login.microsoftonline.com/x/y/v2.0"));
        assert!(!could_match(T, "https://login.microsoftonline.com//v2.0"));
        assert!(could_match("https://idp", "https://idp"));
    }

    #[test]
    fn a_tenant_id_is_a_guid_and_nothing_else() {
        assert!(is_tenant_id(TID));
        assert!(is_tenant_id("8F5C0A2E-4B1D-4C3A-9E7F-0D6B5A4C3B2A"));
        for bad in [
            "",
            "8f5c0a2e4b1d4c3a9e7f0d6b5a4c3b2a",
            "8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2",
            "8f5c0a2e-4b1d-4c3a-9e7f0-d6b5a4c3b2a",
            "8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2g",
            "8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2a-",
            "8f5c0a2é-4b1d-4c3a-9e7f-0d6b5a4c3b2",
        ] {
            assert!(!is_tenant_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_template_without_allowed_tenants_admits_nobody() {
        let c = claims(json!({"tid": TID}));
        assert_eq!(check_tenant(T, &[], &c), Err(TokenError::TenantNotAllowed));
        assert_eq!(check_tenant(T, &[TID.to_uppercase()], &c), Ok(()));
        assert_eq!(
            check_tenant(T, &["11111111-1111-1111-1111-111111111111".into()], &c),
            Err(TokenError::TenantNotAllowed)
        );
        assert_eq!(check_tenant("https://idp", &[], &c), Ok(()));
    }

    #[test]
    fn keys_serve_only_their_issuer() {
        let iss = substitute(T, TID);
        assert!(key_serves(Some(T), &iss, Some(TID)));
        assert!(!key_serves(Some(T), &iss, Some("11111111-1111-1111-1111-111111111111")));
        let msa = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
        assert!(!key_serves(Some(msa), &iss, Some(TID)));
        assert!(key_serves(None, &iss, Some(TID)));
    }

    #[test]
    fn guests_by_acct_or_foreign_idp() {
        let iss = format!("https://sts.windows.net/{TID}/");
        assert!(!is_guest(&claims(json!({"iss": iss, "tid": TID}))));
        assert!(is_guest(&claims(json!({"iss": iss, "tid": TID, "acct": 1}))));
        assert!(!is_guest(&claims(json!({"iss": iss, "tid": TID, "acct": 0}))));
        assert!(is_guest(&claims(json!({"iss": iss, "tid": TID, "idp": "https://sts.windows.net/other/"}))));
        assert!(is_guest(&claims(json!({"iss": iss, "tid": TID, "idp": "live.com"}))));
        assert!(!is_guest(&claims(json!({"iss": iss, "tid": TID, "idp": iss}))));
    }

    #[test]
    fn overage_indicators() {
        assert!(has_group_overage(&claims(json!({"_claim_names": {"groups": "src1"}}))));
        assert!(has_group_overage(&claims(json!({"hasgroups": true}))));
        assert!(!has_group_overage(&claims(json!({"groups": ["a"]}))));
    }
}
