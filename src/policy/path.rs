//! Normalising request paths and hosts, so that the policy and the upstream see the same thing and
//! `/admin` cannot be reached as `/%61dmin`, `//admin` or `/x/../admin`.

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits, or an encoded control character.
    #[error("the path has an invalid percent-encoding")]
    BadEncoding,
    /// The path does not start with `/`.
    #[error("the path must start with /")]
    NotAbsolute,
    /// A segment hides a `..` behind an encoded separator or a `;parameter` (`/admin/..%2F..%2Fpublic`,
    /// `/admin/..;x/public`): servers that decode it and servers that do not would disagree about which
    /// prefix the path is under.
    #[error("the path hides a dot segment behind an encoded separator or a ;parameter")]
    AmbiguousDotSegment,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises a request path (without the query): percent-encoded unreserved characters are decoded, other
/// percent-encodings are kept with upper-case hex, repeated slashes are merged and `.`/`..` segments resolved.
/// Encoded control characters (`%00`–`%1F`, `%7F`) are refused, and so are segments in which the readings
/// [`matching_path`] makes reveal a `..` that climbs out of the segment (see [`PathError::AmbiguousDotSegment`]).
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let path = normalize(raw)?;
    if path.split('/').any(|segment| (segment.contains('%') || segment.contains(';')) && climbs_out(segment)) {
        return Err(PathError::AmbiguousDotSegment);
    }
    Ok(path)
}

/// True when the readings [`matching_path`] makes of one segment (`;parameters` dropped, `%25`, `%2F`, `%5C`
/// and `%2E` decoded, up to three times) give a `..` with nothing before it inside the segment to cancel:
/// matching would then resolve it against the segments before, which an upstream that keeps the segment as
/// it is would not. `/a%2F..%2Fadmin` stays inside its segment (it reads as `/admin` everywhere) and passes.
fn climbs_out(segment: &str) -> bool {
    let mut text = segment.to_string();
    for _ in 0..3 {
        let unparametered: Vec<&str> = text.split('/').map(|piece| piece.split(';').next().unwrap_or("")).collect();
        let next = unparametered
            .join("/")
            .replace("%25", "%")
            .replace("%2F", "/")
            .replace("%2f", "/")
            .replace("%5C", "/")
            .replace("%5c", "/")
            .replace("%2E", ".")
            .replace("%2e", ".");
        let mut depth = 0usize;
        for piece in next.split('/') {
            match piece {
                "" | "." => {}
                ".." if depth == 0 => return true,
                ".." => depth -= 1,
                _ => depth += 1,
            }
        }
        if next == text {
            break;
        }
        text = next;
    }
    false
}

/// [`normalize_path`] without the check for ambiguous dot segments: [`matching_path`] uses it on the readings
/// it makes, which are allowed to have resolved them.
/// True when `normalize` would give `raw` back as it is: an absolute path with no control character, no
/// percent sign, and no empty, `.` or `..` segment (a trailing slash excepted).
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else { return false };
    let mut segments = rest.split('/').peekable();
    raw.bytes().all(|b| b >= 0x20 && b != 0x7f && b != b'%')
        && std::iter::from_fn(|| segments.next().map(|s| (s, segments.peek().is_none())))
            .all(|(s, last)| s != "." && s != ".." && (last || !s.is_empty()))
}

fn normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Most paths are already normal: nothing encoded, no empty or dot segment.
    if is_normal(raw) {
        return Ok(raw.to_string());
    }
    normalize_slowly(raw)
}

fn normalize_slowly(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Pass 1: percent-decoding of unreserved characters only; reserved ones (such as %2F) keep their meaning.
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadEncoding),
            };
            let value = h * 16 + l;
            if value < 0x20 || value == 0x7f {
                return Err(PathError::BadEncoding);
            }
            if is_unreserved(value) {
                decoded.push(value as char);
            } else {
                decoded.push('%');
                decoded.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                decoded.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
            }
            i += 3;
        } else {
            if b < 0x20 || b == 0x7f {
                return Err(PathError::BadEncoding);
            }
            // Safe to copy the UTF-8 sequence byte by byte: we only ever split at ASCII bytes.
            let ch_len = utf8_len(b);
            decoded.push_str(
                std::str::from_utf8(&bytes[i..(i + ch_len).min(bytes.len())]).map_err(|_| PathError::BadEncoding)?,
            );
            i += ch_len;
        }
    }
    // Pass 2: segments.
    let mut out: Vec<&str> = Vec::new();
    let trailing_slash = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || (trailing_slash && !out.is_empty()) {
        path.push('/');
    }
    Ok(path)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// The path policies are matched on: the normalised path with encoded slashes and backslashes (`%2F`, `%5C`)
/// read as separators, and dot segments resolved again. The normalised path itself (with `%2F` kept, as tools
/// like GitLab need) is what is forwarded; matching on the stricter form means an upstream that decodes `%2F`
/// cannot be reached at `/admin/users` through `/admin%2Fusers` under a looser route.
///
/// Servlet containers (Tomcat, Jetty under Jenkins, Spring) ignore `;parameters` in path segments and read
/// `/admin;x=1` as `/admin`, and some stacks decode twice (`%2561` → `%61` → `a`); matching sees through both.
pub fn matching_path(normalized: &str) -> std::borrow::Cow<'_, str> {
    if !normalized.contains("%2F")
        && !normalized.contains("%5C")
        && !normalized.contains(';')
        && !normalized.contains("%25")
    {
        return std::borrow::Cow::Borrowed(normalized);
    }
    let mut path = normalized.to_string();
    // Twice: a double-encoded form decodes to a once-encoded one, which the second pass resolves.
    for _ in 0..2 {
        let unparametered: String =
            path.split('/').map(|segment| segment.split(';').next().unwrap_or("")).collect::<Vec<_>>().join("/");
        let decoded = unparametered
            .replace("%25", "%")
            .replace("%2F", "/")
            .replace("%2f", "/")
            .replace("%5C", "/")
            .replace("%5c", "/");
        path = match normalize(&decoded) {
            Ok(p) => p,
            Err(_) => decoded,
        };
    }
    std::borrow::Cow::Owned(path)
}

/// Normalises a host for matching: lower case, without a port and without a trailing dot (copied only when
/// a letter must be lowered).
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        // [v6]:port
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// True when `path` equals `prefix` or continues it at a segment boundary (`/admin` covers `/admin/x`, not
/// `/administrator`).
pub fn has_path_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Matches a route path pattern with globs against a path, as a prefix at a segment boundary: `*` is one
/// whole segment, `**` any number of segments (none included). `/projects/*/settings` covers
/// `/projects/web/settings/general`; `/api/**/admin` covers `/api/admin` and `/api/v4/x/admin/users`.
pub fn glob_prefix_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segments_match(&pattern, &path)
}

fn segments_match(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        // The whole pattern matched a prefix of the path.
        None => true,
        Some((&"**", rest)) => (0..=path.len()).any(|skip| segments_match(rest, &path[skip..])),
        Some((segment, rest)) => match path.split_first() {
            Some((first, path_rest)) => (*segment == "*" || segment == first) && segments_match(rest, path_rest),
            None => false,
        },
    }
}

/// The length of a path pattern's literal part before its first glob: how specific it is.
pub fn literal_prefix_len(pattern: &str) -> usize {
    pattern.find('*').unwrap_or(pattern.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shortcut_for_normal_paths_agrees_with_the_full_normalisation() {
        // Every path of up to seven characters over the characters that matter to normalisation.
        let mut paths = vec![String::from("/")];
        let mut normal = 0;
        for _ in 0..6 {
            let longer: Vec<String> =
                paths.iter().flat_map(|p| ["/", ".", "a", "%", ";", "\u{7f}"].map(|c| format!("{p}{c}"))).collect();
            for p in &longer {
                if super::is_normal(p) {
                    normal += 1;
                    assert_eq!(super::normalize_slowly(p).as_deref(), Ok(p.as_str()), "{p:?}");
                }
            }
            paths = longer;
        }
        assert!(normal > 100, "the shortcut is taken for many paths ({normal})");
        for not_normal in ["/a//b", "/.", "/a/..", "/a/./b", "//", "/%61", "/a\u{7f}", "a/b"] {
            assert!(!super::is_normal(not_normal), "{not_normal:?}");
        }
    }

    #[test]
    fn globs_match_whole_segments_as_prefixes() {
        assert!(glob_prefix_match("/projects/*/settings", "/projects/web/settings"));
        assert!(glob_prefix_match("/projects/*/settings", "/projects/web/settings/general"));
        assert!(!glob_prefix_match("/projects/*/settings", "/projects/settings"));
        assert!(!glob_prefix_match("/projects/*/settings", "/projects/web/settingsx"));
        assert!(glob_prefix_match("/api/**/admin", "/api/admin"));
        assert!(glob_prefix_match("/api/**/admin", "/api/v4/x/admin/users"));
        assert!(!glob_prefix_match("/api/**/admin", "/api/v4/administrator"));
        assert!(glob_prefix_match("/**", "/anything/at/all"));
    }

    use super::*;

    #[test]
    fn bypass_forms_normalise_to_the_plain_path() {
        for raw in [
            "/admin",
            "/%61dmin",
            "//admin",
            "/x/../admin",
            "/admin/./",
            "/./admin",
            "/%2e%2e/admin",
            "/a/b/../../admin",
        ] {
            let p = normalize_path(raw).unwrap();
            assert!(p == "/admin" || p == "/admin/", "{raw} -> {p}");
        }
        assert_eq!(normalize_path("/../../etc").unwrap(), "/etc");
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("/a/").unwrap(), "/a/");
    }

    #[test]
    fn reserved_encodings_keep_their_meaning() {
        assert_eq!(normalize_path("/api/v4/projects/group%2fproject").unwrap(), "/api/v4/projects/group%2Fproject");
        assert_eq!(normalize_path("/caf%C3%A9").unwrap(), "/caf%C3%A9");
        assert_eq!(normalize_path("/café").unwrap(), "/café");
    }

    #[test]
    fn broken_encodings_are_refused() {
        assert_eq!(normalize_path("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("/a%2"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("/a%00b"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn dot_segments_hidden_behind_encoded_separators_or_parameters_are_refused() {
        // Found while writing the fuzz invariant "the matching path never leaves /admin when the forwarded path
        // is under it": these were forwarded under /admin but matched as /public.
        for raw in [
            "/admin/..%2F..%2Fpublic",
            "/admin/..%2fpublic",
            "/admin/..%5Cpublic",
            "/admin/..;x/public",
            "/admin/..;/public",
            "/admin/%252e%252e/public",
            "/admin/%2e%2e%2Fpublic",
            "/admin/.%2e;x=1/public",
            "/admin/x%2F..%2F..%2Fpublic",
            "/admin/..%252Fpublic",
        ] {
            assert_eq!(normalize_path(raw), Err(PathError::AmbiguousDotSegment), "{raw}");
        }
        // Inside their own segment, encoded dot segments read the same everywhere, and stay accepted.
        for (raw, matched) in [
            ("/x%2F..%2Fadmin", "/admin"),
            ("/admin/a%2F..", "/admin/"),
            ("/api/v4/projects/group%2Fproject", "/api/v4/projects/group/project"),
            ("/admin;x=1/users", "/admin/users"),
            ("/files/a..b%2F...", "/files/a..b/..."),
        ] {
            let p = normalize_path(raw).unwrap();
            assert_eq!(matching_path(&p), matched, "{raw}");
        }
    }

    #[test]
    fn encoded_slashes_separate_segments_for_matching_only() {
        assert_eq!(matching_path("/admin%2Fusers"), "/admin/users");
        assert_eq!(matching_path("/a%2F..%2Fadmin"), "/admin");
        assert_eq!(matching_path("/x%5Cadmin"), "/x/admin");
        assert_eq!(matching_path("/plain/path"), "/plain/path");
        assert_eq!(matching_path("/admin;x=1"), "/admin");
        assert_eq!(matching_path("/admin;jsessionid=1/users"), "/admin/users");
        assert_eq!(matching_path("/%2561dmin"), "/admin");
    }

    #[test]
    fn hosts_lose_port_case_and_trailing_dot() {
        assert_eq!(normalize_host("GitLab.Example.com.:443"), "gitlab.example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn prefixes_stop_at_segment_boundaries() {
        assert!(has_path_prefix("/admin", "/admin"));
        assert!(has_path_prefix("/admin/x", "/admin"));
        assert!(has_path_prefix("/admin/x", "/admin/"));
        assert!(!has_path_prefix("/administrator", "/admin"));
        assert!(has_path_prefix("/anything", "/"));
    }
}
