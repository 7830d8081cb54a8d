//! Request paths: normalisation before matching, regex rule paths, and rewrite templates.
//!
//! - [`normalize`] is what every request path goes through before it is matched, and what the
//!   endpoint then receives, so that a request can never match one route and reach another
//!   route's path (`/public/../admin` is `/admin` for the router and for the endpoint).
//! - [`PathRegex`] is a rule path read the way ingress-nginx reads paths of a host that uses
//!   regexes (`use-regex`, `rewrite-target`): case-insensitive, anchored at the start only.
//! - [`Template`] is a `rewrite-target` with its `$1`…`$9` capture references.

use std::borrow::Cow;
use std::fmt;

/// The most bytes a compiled path regex may take (the `regex` crate's size limit). Matching
/// is linear in the path's length whatever the pattern (no backtracking).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Normalises a request path (without its query): percent-encoded unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) are decoded and other percent-escapes upper-cased (`%2f` → `%2F`,
/// which stays encoded), repeated slashes are merged, and `.` and `..` segments are resolved
/// (RFC 3986 §5.2.4; `..` never climbs above the root). A path that needs none of this is
/// returned as it is, without allocating.
///
/// The result starts with `/`, contains no `//`, no `.` or `..` segment (also not encoded),
/// and normalising it again changes nothing. Two kinds of paths are errors (400, as from nginx
/// for the first): a `%` that does not start an escape (`%zz`, a trailing `%`), since decoding
/// around it could make a new escape out of it (`%a%41` → `%aA`); and a `.` or `..` next to an
/// encoded slash (`/x%2F..%2Fadmin`), which a backend that decodes `%2F` would resolve to
/// another path than the one weir routed (ingress-nginx routes it as `/admin`).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !needs_normalizing(path) {
        return Ok(Cow::Borrowed(path));
    }
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    let body = path.strip_prefix('/').unwrap_or(path);
    for raw in body.split('/') {
        let segment = decode_unreserved(raw)?;
        if segment.contains("%2F") && segment.split("%2F").any(|part| part == "." || part == "..") {
            return Err(PathError::EncodedDotSegment);
        }
        trailing_slash = true;
        match segment.as_ref() {
            "" => {}
            "." => {}
            ".." => {
                segments.pop();
            }
            _ => {
                segments.push(segment.into_owned());
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    // A path with `%` often normalises to itself (`/a%20b`): keep the caller's.
    if out == path {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(out))
}

/// The path routing matches, from a normalised request path: what backends commonly read as
/// something else is made plain first — an encoded slash (`%2F`) is a `/`, as nginx matches
/// it, and path parameters (`;…` in a segment, which Servlet containers drop) go — and the
/// result is normalised again, so that neither `/admin%2Fusers`, `/admin;x` nor `/.;/admin`
/// can pass a rule `/admin` by. The endpoint still receives the normalised path as sent.
pub fn routing_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.bytes().any(|b| b == b';' || b == b'%') {
        return Ok(Cow::Borrowed(path));
    }
    let slashes = path.contains("%2F") || path.contains("%2f");
    if !slashes && !path.contains(';') {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = if slashes {
        Cow::Owned(path.replace("%2F", "/").replace("%2f", "/"))
    } else {
        Cow::Borrowed(path)
    };
    let mut plain = String::with_capacity(decoded.len());
    for (i, segment) in decoded.split('/').enumerate() {
        if i > 0 {
            plain.push('/');
        }
        plain.push_str(segment.split_once(';').map_or(segment, |(name, _)| name));
    }
    Ok(Cow::Owned(normalize(&plain)?.into_owned()))
}

/// Why a request path cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` that does not start a percent-escape.
    #[error("a '%' in the path does not start a percent-escape")]
    MalformedEscape,
    /// A `.` or `..` segment hidden behind an encoded slash (`%2F..%2F`).
    #[error("a dot-segment next to an encoded slash")]
    EncodedDotSegment,
}

/// Whether [`normalize`] would change `path`: it does not start with `/`, or it contains a
/// `%`, `//`, or a segment starting with `.` that is `.` or `..`.
fn needs_normalizing(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return true;
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => return true,
            b'/' => match bytes.get(i + 1) {
                Some(b'/') => return true,
                Some(b'.') => {
                    let rest = &bytes[i + 2..];
                    let next = rest.first().copied();
                    if matches!(next, None | Some(b'/'))
                        || (next == Some(b'.') && matches!(rest.get(1), None | Some(b'/')))
                    {
                        return true;
                    }
                }
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    false
}

/// A segment with its percent-encoded unreserved characters decoded and the remaining escapes'
/// hex digits upper-cased.
fn decode_unreserved(segment: &str) -> Result<Cow<'_, str>, PathError> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            let byte = hi << 4 | lo;
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        if bytes[i] == b'%' {
            return Err(PathError::MalformedEscape);
        }
        // Percent-escapes are ASCII, so `i` is always on a character boundary here.
        let ch = segment[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(Cow::Owned(out))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A rule path matched as a regex, as ingress-nginx matches the paths of a host that uses
/// regexes: `(?i)^<path>` — case-insensitive, anchored at the start, a prefix match unless the
/// path itself ends with `$`. Only a match that starts at the start of the path counts, so a
/// path cannot escape the anchor (`/a)|(b`); every alternative is anchored (nginx anchors only
/// the first).
#[derive(Debug, Clone)]
pub struct PathRegex {
    regex: regex::Regex,
    /// The path as written in the rule.
    source: String,
}

impl PathRegex {
    /// Compiles `path` (as written in the Ingress) or says why it does not compile.
    pub fn new(path: &str) -> Result<Self, InvalidPattern> {
        Self::compile(&format!("^(?:{path})"), path)
    }

    /// A rule path matched literally, case-insensitively, as a prefix (for a path that does not
    /// compile but must still be matched: the route of a fail-closed Ingress).
    pub fn literal(path: &str) -> Self {
        Self::compile(&format!("^{}", regex::escape(path)), path)
            .expect("an escaped literal always compiles")
    }

    fn compile(pattern: &str, path: &str) -> Result<Self, InvalidPattern> {
        let regex = regex::RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => InvalidPattern(format!(
                    "the regex is too large once compiled (limit {limit} bytes)"
                )),
                other => {
                    // The parser's message spans several lines with a caret under the error.
                    let text = other.to_string();
                    let last = text.lines().last().unwrap_or("").trim();
                    let detail = last.strip_prefix("error: ").unwrap_or(last);
                    InvalidPattern(format!(
                        "it is not a regex weir's engine accepts: {detail} (the engine \
                         guarantees linear-time matching, so it has no lookaround or \
                         backreferences)"
                    ))
                }
            })?;
        Ok(PathRegex {
            regex,
            source: path.to_owned(),
        })
    }

    /// Whether a (normalised) request path matches at its start.
    pub fn is_match(&self, path: &str) -> bool {
        self.regex.find(path).is_some_and(|m| m.start() == 0)
    }

    /// The capture groups of a match of `path` at its start (`None` when there is none);
    /// group 0 is the whole match.
    pub fn captures<'p>(&self, path: &'p str) -> Option<regex::Captures<'p>> {
        self.regex
            .captures(path)
            .filter(|c| c.get(0).is_some_and(|m| m.start() == 0))
    }

    /// The rule path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// How many capture groups the path has.
    pub fn groups(&self) -> usize {
        self.regex.captures_len() - 1
    }
}

/// Why a path or rewrite target cannot be used (the sentence says what is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPattern(pub String);

impl InvalidPattern {
    /// Whether the sentence mentions `text` (for tests).
    pub fn contains(&self, text: &str) -> bool {
        self.0.contains(text)
    }
}

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for PathRegex {}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// `$N`: capture group N (1–9).
    Group(usize),
}

/// A `rewrite-target` value: text and `$1`…`$9` (or `${1}`…`${9}`) capture references,
/// expanded against the capture groups of the route's path regex as nginx's `rewrite` does.
/// A `?` starts new query arguments, to which the request's own arguments are appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

impl Template {
    /// Parses a rewrite target or says what is wrong with it: it must start with `/` or a
    /// capture reference, be a valid path (and query) once the references are filled in, and
    /// `$` may only introduce `$1`…`$9` (nginx's other variables are not supported: they would
    /// be configuration text interpreted per request).
    pub fn parse(target: &str) -> Result<Self, InvalidPattern> {
        let invalid = |why: &str| Err(InvalidPattern(why.to_owned()));
        if target.contains(char::is_whitespace) || target.is_empty() {
            return invalid("it must be a path without spaces");
        }
        if target.contains("://") {
            return invalid(
                "it is a URL; a rewrite target is a path (use permanent-redirect or \
                 temporal-redirect to redirect)",
            );
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = target;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (digit, len) = match after.as_bytes() {
                [b'{', d @ b'1'..=b'9', b'}', ..] => (*d, 3),
                [d @ b'1'..=b'9', ..] => (*d, 1),
                _ => {
                    return Err(InvalidPattern(format!(
                        "{:?} is not a capture reference; only $1 to $9 are supported",
                        format!("${}", after.chars().take(12).collect::<String>())
                    )));
                }
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Group(usize::from(digit - b'0')));
            rest = &after[len..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if let Some(Part::Text(t)) = parts.first()
            && !t.starts_with('/')
        {
            return invalid("it must start with '/' or a capture reference like $1");
        }
        // The text must be valid in a path and query whatever the captures are.
        let sample: String = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Group(_) => "x",
            })
            .collect();
        let sample = if sample.starts_with('/') {
            sample
        } else {
            format!("/{sample}")
        };
        let path = sample.split_once('?').map_or(sample.as_str(), |(p, _)| p);
        if http::uri::PathAndQuery::try_from(sample.as_str()).is_err() || normalize(path).is_err() {
            return invalid(
                "it is not a valid path: only URI characters, and '%' only in escapes like %2F",
            );
        }
        Ok(Template {
            parts,
            source: target.to_owned(),
        })
    }

    /// Whether the template refers to capture groups (then the path must be a regex with
    /// that many groups for the reference to mean anything).
    pub fn highest_group(&self) -> usize {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Group(n) => Some(*n),
                Part::Text(_) => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The new path and query for a request whose (normalised) path gave `captures`, and
    /// whose query was `query`. Missing groups expand to nothing. The result starts with `/`.
    pub fn expand(&self, captures: Option<&regex::Captures<'_>>, query: Option<&str>) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Group(n) => {
                    if let Some(m) = captures.and_then(|c| c.get(*n)) {
                        out.push_str(m.as_str());
                    }
                }
            }
        }
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(query);
        }
        out
    }

    /// The target as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes_dot_segments_slashes_and_encodings() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E./admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/", "/a/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2Fb"),
            ("/%61dmin", "/admin"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/.well-known/acme", "/.well-known/acme"),
            ("/a/...", "/a/..."),
            ("/a/.b", "/a/.b"),
            ("", "/"),
        ] {
            assert_eq!(normalize(raw).unwrap(), want, "{raw}");
        }
        assert!(matches!(normalize("/a/b.c/d"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/.well-known/x"), Ok(Cow::Borrowed(_))));
        assert!(
            matches!(normalize("/a%20b/c%C3%A9"), Ok(Cow::Borrowed(_))),
            "unchanged: borrowed"
        );
        for bad in ["/%zz", "/a/%", "/%2", "/%a%41", "/%%41"] {
            assert_eq!(normalize(bad), Err(PathError::MalformedEscape), "{bad}");
        }
        for bad in ["/x%2F..%2Fadmin", "/x%2f..", "/%2E%2E%2Fadmin", "/a/.%2Fb"] {
            assert_eq!(normalize(bad), Err(PathError::EncodedDotSegment), "{bad}");
        }
        assert_eq!(
            normalize("/a%2F.b").unwrap(),
            "/a%2F.b",
            "not a dot-segment"
        );
    }

    #[test]
    fn routing_paths_see_through_encoded_slashes_and_path_parameters() {
        for (path, routed) in [
            ("/admin", "/admin"),
            ("/a%20b", "/a%20b"),
            ("/admin%2Fusers", "/admin/users"),
            ("/admin%2fusers", "/admin/users"),
            ("/admin;x", "/admin"),
            ("/admin;jsessionid=1/users", "/admin/users"),
            ("/.;/admin", "/admin"),
            ("/;/admin", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/public;x/..;y/admin;z/", "/admin/"),
        ] {
            assert_eq!(routing_path(path).unwrap(), routed, "{path}");
        }
    }

    proptest! {
        #[test]
        fn normalized_paths_are_canonical(raw in "(/|[a-z]{1,3}|\\.{1,3}|%2[eEfF]|%4[1-9]|%[0-9a-fA-F]{0,2}|\\?){0,12}") {
            let once = match normalize(&raw) {
                Ok(once) => once.into_owned(),
                Err(PathError::MalformedEscape) => {
                    let malformed = raw.match_indices('%').any(|(i, _)| {
                        raw[i + 1..].bytes().take(2).filter(u8::is_ascii_hexdigit).count() != 2
                    });
                    prop_assert!(malformed, "only malformed escapes are refused: {raw}");
                    return Ok(());
                }
                Err(PathError::EncodedDotSegment) => {
                    prop_assert!(raw.to_ascii_uppercase().contains("%2F"), "{raw}");
                    return Ok(());
                }
            };
            prop_assert!(once.starts_with('/'), "{once}");
            prop_assert!(!once.contains("//"), "{once}");
            for segment in once.split('/') {
                prop_assert!(segment != "." && segment != "..", "{once}");
                let lower = segment.to_ascii_lowercase();
                prop_assert!(lower != "%2e" && lower != "%2e%2e" && lower != ".%2e" && lower != "%2e.", "{once}");
            }
            prop_assert_eq!(normalize(&once).unwrap().into_owned(), once.clone(), "idempotent");
            // Without dot-segments nothing is removed, so every %2F survives, still encoded.
            if !raw.contains('.') && !raw.to_ascii_lowercase().contains("%2e") {
                let slashes = |s: &str| s.to_ascii_uppercase().matches("%2F").count();
                prop_assert_eq!(slashes(&raw), slashes(&once), "%2F stays encoded");
            }
        }
    }

    #[test]
    fn regex_paths_are_case_insensitive_prefixes_anchored_at_the_start() {
        let r = PathRegex::new("/[A-Z]{3}").unwrap();
        assert!(r.is_match("/ABC"));
        assert!(r.is_match("/abc"), "case-insensitive");
        assert!(r.is_match("/abcdef/x"), "a prefix match");
        assert!(!r.is_match("/x/abc"), "anchored at the start");
        let exact = PathRegex::new("/foo$").unwrap();
        assert!(exact.is_match("/FOO") && !exact.is_match("/foo/"));
        let alternation = PathRegex::new("/a|/b").unwrap();
        assert!(
            !alternation.is_match("/x/b"),
            "the anchor covers every branch"
        );
        let escape = PathRegex::new("/api)|(admin").unwrap();
        assert!(
            !escape.is_match("/public/admin"),
            "a path cannot close the anchor's group"
        );
        assert!(escape.is_match("/api/x") && !escape.is_match("/admin"));
        assert!(escape.captures("/public/admin").is_none());
        let literal = PathRegex::literal("/admin(?!/public)");
        assert!(literal.is_match("/ADMIN(?!/public)/x") && !literal.is_match("/admin/x"));
        assert!(PathRegex::new("/(?=x)").unwrap_err().contains("lookaround"));
        assert!(PathRegex::new("/(").is_err());
        assert!(
            PathRegex::new("/(a{1000}){1000}")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn templates_expand_captures_and_keep_the_query() {
        let regex = PathRegex::new("/something(/|$)(.*)").unwrap();
        let target = Template::parse("/$2").unwrap();
        let expand = |path: &str, query| target.expand(regex.captures(path).as_ref(), query);
        assert_eq!(expand("/something/new", None), "/new");
        assert_eq!(expand("/something", None), "/");
        assert_eq!(expand("/something/a/b", Some("x=1")), "/a/b?x=1");
        let with_query = Template::parse("/v2/${1}?from=rewrite").unwrap();
        assert_eq!(
            with_query.expand(
                PathRegex::new("/(.*)").unwrap().captures("/p").as_ref(),
                Some("a=b")
            ),
            "/v2/p?from=rewrite&a=b"
        );
        assert_eq!(Template::parse("$1").unwrap().expand(None, None), "/");
        assert_eq!(Template::parse("/static").unwrap().highest_group(), 0);
        assert_eq!(Template::parse("/$1/$3").unwrap().highest_group(), 3);
        for bad in [
            "",
            "/a b",
            "http://x/",
            "/$host",
            "/$0",
            "static",
            "/$",
            "/100%/$1",
            "/a%zz",
            "/x%2F..%2F$1",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Template::parse("/caf%C3%A9/$1?a=b").is_ok());
    }

    /// Segments of clean request paths: plain ones, dotted ones that are not dot-segments,
    /// and escapes that stay encoded (upper-case, as [`normalize`] writes them), an encoded
    /// slash among them.
    const SEGMENTS: [&str; 9] = ["a", "b", "ab", "A", "...", ".b", "%20", "%C3%A9", "a%2Fb"];
    /// Rule paths (each rule as Exact or Prefix).
    const RULES: [&str; 8] = ["/", "/a", "/a/b", "/ab", "/A", "/a/ab", "/b", "/b/a/a"];
    /// What can come before a segment without changing what the path denotes.
    const NOISE: [&str; 6] = [".", "%2e", "", "zz/..", "z%7A/%2E%2e", "x/.%2E"];

    /// One segment of a clean path and how it is written: the noise segments before it,
    /// which of its characters are percent-encoded, and whether escapes are in lower case.
    type Written = (usize, Vec<usize>, u16, bool);

    /// `segment` with the characters `mask` picks percent-encoded, escapes in lower case if
    /// `lower`.
    fn encode(segment: &str, mask: u16, lower: bool) -> String {
        let case = |s: String| if lower { s.to_ascii_lowercase() } else { s };
        let mut out = String::new();
        let mut rest = segment;
        let mut i = 0;
        while let Some(c) = rest.chars().next() {
            if c == '%' {
                out.push_str(&case(rest[..3].to_owned()));
                rest = &rest[3..];
            } else {
                if mask >> (i % 16) & 1 == 1 {
                    out.push_str(&case(format!("%{:02X}", c as u32)));
                } else {
                    out.push(c);
                }
                rest = &rest[1..];
            }
            i += 1;
        }
        out
    }

    /// The rule of `rules` (path, Exact?) that serves routing path `path` by the Ingress
    /// rules written out plainly: an Exact rule equal to it, else the Prefix rule with the
    /// longest path whose `/`-separated elements start the path's.
    fn reference_route(rules: &[(&str, bool)], path: &str) -> Option<usize> {
        if let Some(i) = rules.iter().position(|(p, exact)| *exact && *p == path) {
            return Some(i);
        }
        let elements = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let requested = elements(path);
        rules
            .iter()
            .enumerate()
            .filter(|(_, (p, exact))| !exact && requested.starts_with(&elements(p)))
            .max_by_key(|(_, (p, _))| p.len())
            .map(|(i, _)| i)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A request path written with dot-segments (also encoded), repeated slashes and
        /// needless or lower-case percent-escapes normalises to the clean path it denotes, and
        /// the route the proxy picks for it (its routing path, from the normalised path) is
        /// the route of the clean path by the Ingress rules' own terms.
        #[test]
        fn a_request_path_routes_like_the_clean_path_it_denotes(
            rules in proptest::collection::btree_set((0..RULES.len(), any::<bool>()), 1..6),
            written in proptest::collection::vec(
                (
                    0..SEGMENTS.len(),
                    proptest::collection::vec(0..NOISE.len(), 0..3),
                    any::<u16>(),
                    any::<bool>(),
                ),
                0..4,
            ),
            climb in any::<bool>(),
            trailing in 0u8..4,
        ) {
            use crate::model::fixtures::ingress;
            let rules: Vec<(&str, bool)> = rules.iter().map(|&(r, exact)| (RULES[r], exact)).collect();
            let mut b = ingress("apps", "paths").class("weir");
            for (i, (path, exact)) in rules.iter().enumerate() {
                let service = format!("s{i}");
                b = if *exact {
                    b.exact("h.com", path, &service, 80)
                } else {
                    b.prefix("h.com", path, &service, 80)
                };
            }
            let input = crate::model::Input {
                ingresses: vec![std::sync::Arc::new(b.build())],
                ..crate::model::Input::default()
            };
            let built = crate::model::build(&input, &crate::model::BuildConfig::default());
            prop_assert_eq!(built.table.route_count(), rules.len(), "{:?}", built.diagnostics);

            let written: Vec<Written> = written;
            let segments: Vec<&str> = written.iter().map(|w| SEGMENTS[w.0]).collect();
            let clean = if segments.is_empty() {
                "/".to_owned()
            } else {
                let slash = if trailing > 0 { "/" } else { "" };
                format!("/{}{slash}", segments.join("/"))
            };
            let mut raw = String::from(if climb { "/.." } else { "" });
            for (segment, noise, mask, lower) in &written {
                for n in noise {
                    raw.push('/');
                    raw.push_str(NOISE[*n]);
                }
                raw.push('/');
                raw.push_str(&encode(SEGMENTS[*segment], *mask, *lower));
            }
            raw.push_str(match trailing {
                0 => "",
                1 => "/",
                2 => "/.",
                _ => "/zz/..",
            });

            let normalized = normalize(&raw).map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
            prop_assert_eq!(normalized.as_ref(), clean.as_str(), "{}", raw);
            let routing = routing_path(&normalized).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(routing.as_ref(), clean.replace("%2F", "/"));
            let routed = built.table.route("h.com", &routing).map(|r| r.backend.service.name.clone());
            let want = reference_route(&rules, &routing).map(|i| format!("s{i}"));
            prop_assert_eq!(routed, want, "{} -> {} by {:?}", raw, routing, rules);
        }
    }
}
