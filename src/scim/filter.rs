//! SCIM filters (RFC 7644 §3.4.2.2): `userName eq "x" and (active eq true or not (title pr))`, value paths
//! such as `emails[type eq "work"]`, evaluated against a resource's JSON. A small recursive-descent parser
//! with a depth limit; any input it does not understand is an `invalidFilter` error, never a panic.

use serde_json::Value;

use super::ScimError;

/// Deepest nesting of parentheses, `not` and value paths accepted.
const MAX_DEPTH: usize = 32;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater or equal
    Ge,
    /// less than
    Lt,
    /// less or equal
    Le,
}

/// An attribute path: `[urn:...:]attr[.sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN, for extension attributes.
    pub uri: Option<String>,
    /// The attribute.
    pub attr: String,
    /// The sub-attribute.
    pub sub: Option<String>,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Both.
    And(Box<Filter>, Box<Filter>),
    /// Either.
    Or(Box<Filter>, Box<Filter>),
    /// Negation.
    Not(Box<Filter>),
    /// `path op value`.
    Compare(AttrPath, Op, Value),
    /// `path pr`.
    Present(AttrPath),
    /// `attr[filter]`: some element of the multi-valued `attr` matches.
    ValuePath(AttrPath, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Word(String),
    Str(String),
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidFilter", detail)
}

fn tokenize(text: &str) -> Result<Vec<Token>, ScimError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '[' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                out.push(Token::CloseBracket);
                i += 1;
            }
            '"' => {
                // A JSON string: find its end, honouring escapes, and let serde decode it.
                let start = i;
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 2,
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if !closed || i > chars.len() {
                    return Err(invalid("a string in the filter is not closed"));
                }
                let raw: String = chars[start..i].iter().collect();
                let s: String =
                    serde_json::from_str(&raw).map_err(|_| invalid("a string in the filter is not valid"))?;
                out.push(Token::Str(s));
            }
            _ => {
                let start = i;
                while i < chars.len() && !matches!(chars[i], ' ' | '\t' | '\n' | '\r' | '(' | ')' | '[' | ']' | '"') {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

/// Parses an attribute path such as `name.givenName` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`.
pub fn parse_attr_path(text: &str) -> Result<AttrPath, ScimError> {
    let (uri, rest) = split_urn(text);
    let (attr, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (rest, None),
    };
    let valid =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
    if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
        return Err(invalid(format!("\"{text}\" is not an attribute path")));
    }
    Ok(AttrPath { uri: uri.map(str::to_string), attr: attr.to_string(), sub: sub.map(str::to_string) })
}

/// Schema URNs whose attributes may be named with the URN in front.
pub const KNOWN_URNS: &[&str] = &[
    super::model::USER_SCHEMA,
    super::model::GROUP_SCHEMA,
    super::model::ENTERPRISE_USER,
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
];

/// Splits `urn:...:attr.sub` into the URN and `attr.sub`. Known URNs are matched ignoring case; an unknown
/// `urn:` path is split at its last colon.
pub fn split_urn(text: &str) -> (Option<&str>, &str) {
    for urn in KNOWN_URNS {
        if text.len() > urn.len()
            && text.is_char_boundary(urn.len())
            && text[..urn.len()].eq_ignore_ascii_case(urn)
            && text[urn.len()..].starts_with(':')
        {
            return (Some(&text[..urn.len()]), &text[urn.len() + 1..]);
        }
    }
    if text.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
        && let Some(at) = text.rfind(':')
    {
        return (Some(&text[..at]), &text[at + 1..]);
    }
    (None, text)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

fn keyword(t: Option<&Token>, word: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn deeper(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(invalid("the filter is nested too deeply")) } else { Ok(()) }
    }

    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and()?;
        while keyword(self.peek(), "or") {
            self.at += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while keyword(self.peek(), "and") {
            self.at += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        if keyword(self.peek(), "not") {
            self.at += 1;
            self.deeper()?;
            if self.next() != Some(Token::Open) {
                return Err(invalid("\"not\" must be followed by a parenthesised filter"));
            }
            let inner = self.or()?;
            if self.next() != Some(Token::Close) {
                return Err(invalid("a parenthesis is not closed"));
            }
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            self.deeper()?;
            let inner = self.or()?;
            if self.next() != Some(Token::Close) {
                return Err(invalid("a parenthesis is not closed"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Filter, ScimError> {
        let Some(Token::Word(path)) = self.next() else {
            return Err(invalid("expected an attribute name"));
        };
        if self.peek() == Some(&Token::OpenBracket) {
            self.at += 1;
            self.deeper()?;
            let attr = parse_attr_path(&path)?;
            let inner = self.or()?;
            if self.next() != Some(Token::CloseBracket) {
                return Err(invalid("a bracket is not closed"));
            }
            self.depth -= 1;
            return Ok(Filter::ValuePath(attr, Box::new(inner)));
        }
        let path = parse_attr_path(&path)?;
        let Some(Token::Word(op)) = self.next() else {
            return Err(invalid("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)"));
        };
        let op = match op.to_ascii_lowercase().as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(invalid(format!("unknown operator \"{other}\""))),
        };
        let value = match self.next() {
            Some(Token::Str(s)) => Value::String(s),
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(&w)
                    .map(Value::Number)
                    .map_err(|_| invalid(format!("\"{w}\" is not a value; strings need double quotes")))?,
            },
            _ => return Err(invalid("expected a value after the operator")),
        };
        Ok(Filter::Compare(path, op, value))
    }
}

/// Parses a filter.
pub fn parse(text: &str) -> Result<Filter, ScimError> {
    if text.len() > 4096 {
        return Err(ScimError::bad_request("tooMany", "the filter is too long"));
    }
    let mut p = Parser { tokens: tokenize(text)?, at: 0, depth: 0 };
    let f = p.or()?;
    if p.at != p.tokens.len() {
        return Err(invalid("unexpected text after the filter"));
    }
    Ok(f)
}

/// A member of a JSON object, by name ignoring case.
pub fn get_ci<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Attributes compared exactly (RFC 7643 `caseExact`); all other strings ignore case.
fn case_exact(path: &AttrPath) -> bool {
    path.sub.is_none() && (path.attr.eq_ignore_ascii_case("id") || path.attr.eq_ignore_ascii_case("externalId"))
}

/// The values `path` selects in `resource` (several for multi-valued attributes).
fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let base = match &path.uri {
        Some(u) if !super::model::is_core_urn(u) => match get_ci(resource, u) {
            Some(ext) => ext,
            None => return Vec::new(),
        },
        _ => resource,
    };
    let Some(v) = get_ci(base, &path.attr) else { return Vec::new() };
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    match &path.sub {
        Some(sub) => items.into_iter().filter_map(|i| get_ci(i, sub)).collect(),
        // A multi-valued complex attribute without a sub-attribute compares its `value`s.
        None if matches!(v, Value::Array(_)) => items
            .into_iter()
            .map(|i| if i.is_object() { get_ci(i, "value").unwrap_or(&Value::Null) } else { i })
            .collect(),
        None => items,
    }
}

fn compare(actual: &Value, op: Op, wanted: &Value, exact: bool) -> bool {
    match (actual, wanted) {
        (Value::String(a), Value::String(w)) => {
            let (a, w) = if exact { (a.clone(), w.clone()) } else { (a.to_lowercase(), w.to_lowercase()) };
            match op {
                Op::Eq => a == w,
                Op::Ne => a != w,
                Op::Co => a.contains(&w),
                Op::Sw => a.starts_with(&w),
                Op::Ew => a.ends_with(&w),
                Op::Gt => a > w,
                Op::Ge => a >= w,
                Op::Lt => a < w,
                Op::Le => a <= w,
            }
        }
        (Value::Bool(a), Value::Bool(w)) => match op {
            Op::Eq => a == w,
            Op::Ne => a != w,
            _ => false,
        },
        // Entra sends booleans as strings; a stored boolean compared with "True" still matches.
        (Value::Bool(a), Value::String(w)) => match (op, w.to_ascii_lowercase().as_str()) {
            (Op::Eq, "true") => *a,
            (Op::Eq, "false") => !*a,
            (Op::Ne, "true") => !*a,
            (Op::Ne, "false") => *a,
            _ => false,
        },
        (Value::Number(a), Value::Number(w)) => {
            let (a, w) = (a.as_f64().unwrap_or(f64::NAN), w.as_f64().unwrap_or(f64::NAN));
            match op {
                Op::Eq => a == w,
                Op::Ne => a != w,
                Op::Gt => a > w,
                Op::Ge => a >= w,
                Op::Lt => a < w,
                Op::Le => a <= w,
                _ => false,
            }
        }
        _ => matches!(op, Op::Ne),
    }
}

/// True when `r` cannot match `filter`, judged from its plain top-level string attributes alone, without
/// rendering it: Entra's lookups (`userName eq "..."`, `externalId eq "..."`, `displayName eq "..."`) then cost
/// a string comparison per resource. `false` means "maybe": [`matches`] decides.
pub fn surely_unmatched(r: &crate::store::Resource, filter: &Filter) -> bool {
    match filter {
        Filter::And(a, b) => surely_unmatched(r, a) || surely_unmatched(r, b),
        Filter::Compare(path, Op::Eq, Value::String(wanted))
            if path.sub.is_none()
                && path.uri.is_none()
                && ["userName", "externalId", "displayName"].iter().any(|a| a.eq_ignore_ascii_case(&path.attr)) =>
        {
            match r.doc.iter().find(|(k, _)| k.eq_ignore_ascii_case(&path.attr)).map(|(_, v)| v) {
                Some(Value::String(have)) if case_exact(path) => have != wanted,
                Some(Value::String(have)) => !have.to_lowercase().eq(&wanted.to_lowercase()),
                // Absent: `eq "x"` cannot match.
                None => true,
                Some(_) => false,
            }
        }
        _ => false,
    }
}

/// True when `resource` matches `filter`.
pub fn matches(resource: &Value, filter: &Filter) -> bool {
    match filter {
        Filter::And(a, b) => matches(resource, a) && matches(resource, b),
        Filter::Or(a, b) => matches(resource, a) || matches(resource, b),
        Filter::Not(f) => !matches(resource, f),
        Filter::Present(path) => values(resource, path).iter().any(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        }),
        Filter::Compare(path, op, wanted) => {
            let found = values(resource, path);
            if wanted.is_null() {
                let absent = found.iter().all(|v| v.is_null());
                return match op {
                    Op::Eq => absent,
                    Op::Ne => !absent,
                    _ => false,
                };
            }
            if found.is_empty() {
                return *op == Op::Ne;
            }
            let exact = case_exact(path);
            if *op == Op::Ne {
                found.iter().all(|v| compare(v, Op::Ne, wanted, exact))
            } else {
                found.iter().any(|v| compare(v, *op, wanted, exact))
            }
        }
        Filter::ValuePath(path, inner) => {
            let container = AttrPath { uri: path.uri.clone(), attr: path.attr.clone(), sub: None };
            let base = match &container.uri {
                Some(u) if !super::model::is_core_urn(u) => get_ci(resource, u),
                _ => Some(resource),
            };
            match base.and_then(|b| get_ci(b, &container.attr)) {
                Some(Value::Array(items)) => items.iter().any(|i| matches(i, inner)),
                Some(v @ Value::Object(_)) => matches(v, inner),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "abc", "userName": "Alice@Example.com", "externalId": "Ext-1", "active": true,
            "name": {"givenName": "Alice"},
            "emails": [{"type": "work", "value": "alice@example.com"}, {"type": "home", "value": "a@home.org"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42"}
        })
    }

    #[test]
    fn filters_match_as_rfc_7644_says() {
        let u = user();
        let yes = [
            r#"userName eq "alice@example.com""#,
            r#"USERNAME EQ "ALICE@EXAMPLE.COM""#,
            r#"externalId eq "Ext-1" and active eq true"#,
            r#"externalId eq "nope" or userName sw "alice""#,
            r#"not (userName eq "bob")"#,
            r#"emails[type eq "work" and value co "example"]"#,
            r#"emails.value ew "home.org""#,
            r#"emails eq "a@home.org""#,
            r#"name.givenName pr and (active eq "True")"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42""#,
            r#"title eq null"#,
            r#"userName ne "bob""#,
        ];
        for f in yes {
            assert!(matches(&u, &parse(f).unwrap()), "{f}");
        }
        let no = [r#"externalId eq "ext-1""#, r#"userName eq "bob""#, r#"emails[type eq "other"]"#, r#"title pr"#];
        for f in no {
            assert!(!matches(&u, &parse(f).unwrap()), "{f}");
        }
    }

    #[test]
    fn random_input_never_panics() {
        // A small deterministic generator over characters that matter to the grammar, plus multi-byte ones.
        let alphabet: Vec<char> = "ab:.[]()\"\\ eqornotpruéü😀-_$0".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (seed % 24) as usize;
            let mut s = String::new();
            for _ in 0..len {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            if let Ok(f) = parse(&s) {
                let _ = matches(&user(), &f);
            }
            let _ = parse_attr_path(&s);
            let mut doc = user().as_object().cloned().unwrap();
            for op in ["add", "replace", "remove"] {
                let ops = super::super::patch::parse(&json!({"Operations": [{"op": op, "path": s, "value": "v"}]}));
                if let Ok(ops) = ops {
                    let _ = super::super::patch::apply(&mut doc, &ops);
                }
                let ops =
                    super::super::patch::parse(&json!({"Operations": [{"op": op, "value": {s.clone(): {"x": 1}}}]}));
                if let Ok(ops) = ops {
                    let _ = super::super::patch::apply(&mut doc, &ops);
                }
            }
            let _ = super::super::model::normalize(super::super::model::Kind::User, doc);
        }
    }

    #[test]
    fn bad_filters_are_invalid_filter_errors_not_panics() {
        for f in [
            "",
            "userName",
            "userName eq",
            "userName zz \"x\"",
            "(userName eq \"x\"",
            "userName eq \"x",
            "userName eq \"x\" and",
            "userName eq x",
            "emails[type eq \"work\"",
            "not userName eq \"x\"",
            "\"\\",
            "[[[[",
            &"(".repeat(100),
            "a.b.c eq \"x\"",
        ] {
            let e = parse(f).unwrap_err();
            assert!(e.scim_type == Some("invalidFilter") || e.scim_type == Some("tooMany"), "{f}: {e:?}");
        }
    }
}
