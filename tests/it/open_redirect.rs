//! Postern never sends a browser to another site: the return target of a sign-in (`/oauth2/start?rd=`) and of a
//! sign-out (`/oauth2/sign_out?rd=`) is a path on Postern, whatever tricks the link uses.

use http::StatusCode;

use crate::support::*;

/// Return targets that point (or may be read as pointing) at another origin.
const HOSTILE: &[&str] = &[
    "//evil.com",
    "/\\evil.com",
    "https://evil.com",
    "https://evil.com/path",
    "/%2F%2Fevil.com",
    "%2F%2Fevil.com",
    "/%252F%252Fevil.com",
    "///evil.com",
    "http://127.0.0.1:1/",
    "javascript:alert(1)",
    " //evil.com",
    "/\t/evil.com",
    "/%09/evil.com",
    "https:evil.com",
];

/// Paths whose dot segments, once resolved, leave a scheme-relative `//evil.com`.
const DOT_SEGMENT_TRICKS: &[&str] = &["/.//evil.com", "/%2e//evil.com", "/a/..//evil.com"];

/// `location`, taken as a browser would relative to Postern, stays on Postern's origin.
fn assert_on_postern(postern: &str, location: &str, rd: &str) {
    let base = url::Url::parse(postern).expect("Postern's URL");
    let target = base.join(location).expect("a URL a browser can follow");
    assert_eq!(target.origin(), base.origin(), "rd={rd:?} led to {location:?}, another origin");
}

#[tokio::test]
async fn after_sign_in_a_hostile_return_target_lands_on_postern_root() {
    let demo = start_demo().await;
    for rd in HOSTILE.iter().chain(DOT_SEGMENT_TRICKS) {
        let browser = Client::new();

        let r = sign_in_flow(&browser, &demo.url, rd, "alice").await;

        assert_signed_in(&r, SESSION_COOKIE);
        let location = r.location();
        assert_on_postern(&demo.url, &location, rd);
        assert_eq!(location, "/", "rd={rd:?}");
    }
}

#[tokio::test]
async fn after_sign_in_a_return_target_on_postern_is_kept() {
    let demo = start_demo().await;
    for (rd, expected) in [
        ("/reports/2024?sort=desc", "/reports/2024?sort=desc"),
        (&*demo.at("/absolute/on/postern"), "/absolute/on/postern"),
    ] {
        let browser = Client::new();

        let r = sign_in_flow(&browser, &demo.url, rd, "alice").await;

        assert_signed_in(&r, SESSION_COOKIE);
        assert_eq!(r.location(), expected, "rd={rd:?}");
    }
}

#[tokio::test]
async fn the_hostile_target_is_refused_even_when_sent_unencoded() {
    let demo = start_demo().await;
    for raw in ["//evil.com", "/%2F%2Fevil.com", "%2F%2Fevil.com", "https://evil.com"] {
        let browser = Client::new();
        let r = browser.get(demo.at(&format!("/oauth2/start?rd={raw}"))).browser().send().await;
        assert_eq!(r.status, StatusCode::FOUND);

        let back = authorize(&browser, &r.location(), "alice").await;
        let r = callback(&browser, &back).await;

        assert_signed_in(&r, SESSION_COOKIE);
        assert_eq!(r.location(), "/", "rd={raw:?}");
    }
}

/// Signs in, signs out with `rd`, and follows the provider back to the signed-out page: the `state` given to
/// the provider and the page's "sign in again" link both point at Postern's root.
async fn assert_sign_out_stays_on_postern(demo: &TestDemo, rd: &str) {
    let browser = sign_in(demo, "alice").await;

    let r = browser.get(demo.at(&format!("/oauth2/sign_out?rd={}", encode(rd)))).browser().send().await;

    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let to_provider = r.location();
    assert!(to_provider.starts_with(&format!("{}/logout?", demo.provider.issuer())), "{to_provider}");
    assert_eq!(query_param(&to_provider, "state").as_deref(), Some("/"), "rd={rd:?}");
    assert_eq!(
        query_param(&to_provider, "post_logout_redirect_uri").as_deref(),
        Some(demo.at("/oauth2/signed_out").as_str())
    );

    // The provider sends the browser back to the signed-out page, whose link stays on Postern.
    let r = browser.get(&to_provider).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND);
    let signed_out = r.location();
    assert!(signed_out.starts_with(&demo.at("/oauth2/signed_out?")));
    let page = browser.get(&signed_out).browser().send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("href=\"/oauth2/start?rd=%2F\""), "rd={rd:?}: {}", page.text());
    assert!(!page.text().contains("evil"), "{}", page.text());
}

/// The signed-out page, reached with `state` = `rd`, offers to sign in again at Postern's root.
async fn assert_signed_out_page_stays_on_postern(demo: &TestDemo, rd: &str) {
    let page = Client::new().get(demo.at(&format!("/oauth2/signed_out?state={}", encode(rd)))).browser().send().await;

    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("href=\"/oauth2/start?rd=%2F\""), "rd={rd:?}: {html}");
    assert!(!html.contains("evil"), "rd={rd:?}: {html}");
}

#[tokio::test]
async fn sign_out_never_carries_a_hostile_return_target_to_the_provider_or_the_signed_out_page() {
    let demo = start_demo().await;
    for rd in HOSTILE {
        assert_sign_out_stays_on_postern(&demo, rd).await;
    }
}

#[tokio::test]
async fn the_signed_out_page_ignores_a_hostile_state() {
    let demo = start_demo().await;
    for rd in HOSTILE {
        assert_signed_out_page_stays_on_postern(&demo, rd).await;
    }
}

/// Today the sign-in callback and `/oauth2/start` check the target a second time and catch `//evil.com`; the
/// sign-out `state` and the signed-out page's link still carry it.
#[tokio::test]
async fn sign_out_does_not_turn_dot_segments_into_a_scheme_relative_target() {
    let demo = start_demo().await;
    for rd in DOT_SEGMENT_TRICKS {
        assert_sign_out_stays_on_postern(&demo, rd).await;
        assert_signed_out_page_stays_on_postern(&demo, rd).await;
    }
}
