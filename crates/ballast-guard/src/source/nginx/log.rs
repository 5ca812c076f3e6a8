//! The access log line ballast reads: its `log_format`, and a pure parser from one line to a
//! [`Record`] (no allocation but the attempts list, no panic on any input).
//!
//! Every field is quoted, so a line is unambiguous whatever a client puts in its URI: nginx
//! escapes `"` and `\` inside a value (as `\x22` and `\x5C` by default, `\"` and `\\` with
//! `escape=json`), so a field ends at the first unescaped quote. The line starts with a
//! literal marker, `ballast1`, so a log written in another format is told apart at once.

use std::borrow::Cow;

/// The first word of every line in ballast's format (its version).
pub const MARKER: &str = "ballast1";

/// The variables of ballast's format, in order.
pub const VARIABLES: [&str; 10] = [
    "msec",
    "status",
    "request_time",
    "upstream_addr",
    "upstream_status",
    "upstream_response_time",
    "proxy_host",
    "remote_addr",
    "host",
    "request_uri",
];

/// The `log_format` string (between the quotes of the directive).
pub fn format_string() -> String {
    let mut s = String::from(MARKER);
    for v in VARIABLES {
        s.push_str(" \"$");
        s.push_str(v);
        s.push('"');
    }
    s
}

/// One request, as the access log records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// When nginx wrote the line (`$msec`), Unix milliseconds.
    pub at_ms: u64,
    /// The status sent to the client.
    pub status: u16,
    /// `$request_time`, milliseconds.
    pub request_time_ms: u64,
    /// Every server nginx tried, in order; the last one answered. Empty when no upstream was
    /// involved (`-`).
    pub attempts: Vec<Attempt<'a>>,
    /// `$proxy_host`: the upstream group (or address) of the last `proxy_pass`.
    pub proxy_host: Option<&'a str>,
    pub remote_addr: &'a str,
    pub host: Cow<'a, str>,
    pub request_uri: Cow<'a, str>,
    /// Variables added after the fixed fields as `name="value"` (the request headers and
    /// cookies a hashing pool's key reads, `http_x_user="bob"`), in line order.
    pub extra: Vec<(&'a str, Cow<'a, str>)>,
}

/// One attempt of a request on one server (or on a group with no server to choose).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt<'a> {
    /// The address as logged (`127.0.0.1:8080`, `unix:/run/app.sock`), or the group's name
    /// when no server of it could be chosen.
    pub target: &'a str,
    /// Which upstream group of the request it was in: 0, then one more after each internal
    /// redirect (` : ` in the lists).
    pub group: u16,
    /// `$upstream_status` at the same position; `None` for `-` (no response).
    pub status: Option<u16>,
    /// `$upstream_response_time` at the same position, milliseconds; `None` for `-`.
    pub response_time_ms: Option<u64>,
}

impl Attempt<'_> {
    /// Whether the target is an address, not a group name: nginx writes the group's name when
    /// no server was selectable.
    pub fn is_address(&self) -> bool {
        let t = self.target;
        t.starts_with("unix:") || t.parse::<std::net::SocketAddr>().is_ok()
    }
}

impl<'a> Record<'a> {
    /// The attempt that answered: the last address of the last group.
    pub fn answered(&self) -> Option<&Attempt<'a>> {
        self.attempts.last()
    }

    /// The attempts before it, which failed and were passed on.
    pub fn failed(&self) -> &[Attempt<'a>] {
        match self.attempts.split_last() {
            Some((_, rest)) => rest,
            None => &[],
        }
    }
}

/// Why a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub what: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

fn err<T>(what: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { what: what.into() })
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Result<Record<'_>, ParseError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let Some(rest) = line.strip_prefix(MARKER) else {
        return err(format!(
            "the line does not start with `{MARKER}`: the access log is not in ballast's format (add the `log_format ballast` that `ballast watch --nginx-log-format` prints)"
        ));
    };
    let mut fields: [&str; VARIABLES.len()] = [""; VARIABLES.len()];
    let mut rest = rest;
    for (i, field) in fields.iter_mut().enumerate() {
        let Some(r) = rest.strip_prefix(" \"") else {
            return err(format!(
                "field {} (`${}`) is missing or not quoted",
                i + 1,
                VARIABLES[i]
            ));
        };
        let end = closing_quote(r.as_bytes()).ok_or_else(|| ParseError {
            what: format!("field {} (`${}`) has no closing quote", i + 1, VARIABLES[i]),
        })?;
        *field = &r[..end];
        rest = &r[end + 1..];
    }
    let extra = extra_fields(rest)?;
    let [
        msec,
        status,
        request_time,
        addrs,
        statuses,
        times,
        proxy_host,
        remote_addr,
        host,
        request_uri,
    ] = fields;
    let at_ms = seconds_to_ms(msec).ok_or_else(|| ParseError {
        what: format!("`$msec` is `{msec}`, not seconds"),
    })?;
    let status = status.parse::<u16>().map_err(|_| ParseError {
        what: format!("`$status` is `{status}`, not a status code"),
    })?;
    let request_time_ms = seconds_to_ms(request_time).ok_or_else(|| ParseError {
        what: format!("`$request_time` is `{request_time}`, not seconds"),
    })?;
    let attempts = attempts(addrs, statuses, times)?;
    Ok(Record {
        at_ms,
        status,
        request_time_ms,
        attempts,
        proxy_host: (proxy_host != "-").then_some(proxy_host),
        remote_addr,
        host: unescape(host),
        request_uri: unescape(request_uri),
        extra,
    })
}

/// The ` name="value"` fields after the fixed ones (none in the base format).
fn extra_fields(mut rest: &str) -> Result<Vec<(&str, Cow<'_, str>)>, ParseError> {
    let mut out = Vec::new();
    loop {
        if rest.trim().is_empty() {
            return Ok(out);
        }
        let Some(r) = rest.strip_prefix(' ') else {
            return err("the line has more fields than ballast's format");
        };
        let Some((name, r)) = r.split_once("=\"") else {
            return err("the line has more fields than ballast's format, not as name=\"value\"");
        };
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return err(format!("the added field `{name}` is not a variable's name"));
        }
        let end = closing_quote(r.as_bytes()).ok_or_else(|| ParseError {
            what: format!("the added field `{name}` has no closing quote"),
        })?;
        out.push((name, unescape(&r[..end])));
        rest = &r[end + 1..];
    }
}

/// The `log_format` string with `variables` added after the fixed fields as
/// `name="$name"`, so a line says which variable each added value is.
pub fn format_string_with(variables: &[String]) -> String {
    let mut s = format_string();
    for v in variables {
        s.push_str(&format!(" {v}=\"${v}\""));
    }
    s
}

/// The attempts from the three parallel lists, which nginx writes with the same separators.
fn attempts<'a>(
    addrs: &'a str,
    statuses: &'a str,
    times: &'a str,
) -> Result<Vec<Attempt<'a>>, ParseError> {
    if addrs == "-" {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(1);
    let mut statuses = ListItems::new(statuses);
    let mut times = ListItems::new(times);
    for (group, target) in ListItems::new(addrs) {
        if target.is_empty() {
            return err(format!("`$upstream_addr` `{addrs}` has an empty entry"));
        }
        let (sg, status) = statuses.next().ok_or_else(|| ParseError {
            what: format!(
                "`$upstream_addr` lists more attempts than `$upstream_status` (`{addrs}`)"
            ),
        })?;
        let (tg, time) = times.next().ok_or_else(|| ParseError {
            what: format!(
                "`$upstream_addr` lists more attempts than `$upstream_response_time` (`{addrs}`)"
            ),
        })?;
        if sg != group || tg != group {
            return err(format!(
                "`$upstream_addr` and `$upstream_status` do not have the same groups (`{addrs}`)"
            ));
        }
        let status = match status {
            "-" => None,
            s => Some(s.parse::<u16>().map_err(|_| ParseError {
                what: format!("`$upstream_status` entry `{s}` is not a status code"),
            })?),
        };
        let response_time_ms = match time {
            "-" => None,
            t => Some(seconds_to_ms(t).ok_or_else(|| ParseError {
                what: format!("`$upstream_response_time` entry `{t}` is not seconds"),
            })?),
        };
        out.push(Attempt {
            target,
            group,
            status,
            response_time_ms,
        });
    }
    if statuses.next().is_some() || times.next().is_some() {
        return err(format!(
            "`$upstream_status` or `$upstream_response_time` lists more attempts than `$upstream_addr` (`{addrs}`)"
        ));
    }
    Ok(out)
}

/// The items of an nginx upstream list, `a, b : c`, each with its group number.
struct ListItems<'a> {
    rest: Option<&'a str>,
    group: u16,
}

impl<'a> ListItems<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            rest: Some(s),
            group: 0,
        }
    }
}

impl<'a> Iterator for ListItems<'a> {
    type Item = (u16, &'a str);

    fn next(&mut self) -> Option<(u16, &'a str)> {
        let s = self.rest?;
        let b = s.as_bytes();
        // The next separator: `, ` inside a group, ` : ` between groups. A `:` inside an
        // address (`127.0.0.1:80`, `unix:/x`) is never surrounded by spaces.
        let mut i = 0;
        while i < b.len() {
            if b[i] == b',' && b.get(i + 1) == Some(&b' ') {
                let item = (self.group, &s[..i]);
                self.rest = Some(&s[i + 2..]);
                return Some(item);
            }
            if b[i] == b' ' && b.get(i + 1) == Some(&b':') && b.get(i + 2) == Some(&b' ') {
                let item = (self.group, &s[..i]);
                self.rest = Some(&s[i + 3..]);
                self.group = self.group.saturating_add(1);
                return Some(item);
            }
            i += 1;
        }
        self.rest = None;
        Some((self.group, s))
    }
}

/// The offset of the quote that ends a field: the first not escaped by a backslash.
fn closing_quote(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// nginx's seconds with millisecond resolution (`1700000000.123`, `0.004`) as milliseconds,
/// read as decimal text so no float rounding changes a count.
pub fn seconds_to_ms(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut ms = 0u64;
    for (i, c) in frac.bytes().take(3).enumerate() {
        ms += u64::from(c - b'0') * [100, 10, 1][i];
    }
    whole.checked_mul(1000)?.checked_add(ms)
}

/// A value as the client sent it: nginx's `\xHH` (default escaping) and JSON's `\"`, `\\`,
/// `\uXXXX` (with `escape=json`) undone. Borrowed when there is nothing to undo.
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let hex = |from: usize, n: usize| -> Option<u32> {
            let digits = s.get(from..from + n)?;
            u32::from_str_radix(digits, 16).ok()
        };
        match b[i + 1] {
            b'x' => match hex(i + 2, 2) {
                Some(v) => {
                    out.push(v as u8);
                    i += 4;
                }
                None => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            b'u' => match hex(i + 2, 4).and_then(char::from_u32) {
                Some(c) => {
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                }
                None => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            c @ (b'"' | b'\\' | b'/') => {
                out.push(c);
                i += 2;
            }
            b'n' => {
                out.push(b'\n');
                i += 2;
            }
            b't' => {
                out.push(b'\t');
                i += 2;
            }
            b'r' => {
                out.push(b'\r');
                i += 2;
            }
            _ => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: [&str; 10]) -> String {
        let mut s = String::from(MARKER);
        for f in fields {
            s.push_str(&format!(" \"{f}\""));
        }
        s
    }

    #[test]
    fn a_plain_request_has_one_attempt() {
        let l = line([
            "1796128323.260",
            "200",
            "0.005",
            "127.0.0.1:18082",
            "200",
            "0.004",
            "app",
            "10.0.0.9",
            "example.org",
            "/a?b=c",
        ]);
        let r = parse_line(&l).unwrap();
        assert_eq!(r.at_ms, 1_796_128_323_260);
        assert_eq!(r.status, 200);
        assert_eq!(r.request_time_ms, 5);
        assert_eq!(r.attempts.len(), 1);
        let a = r.answered().unwrap();
        assert_eq!(
            (a.target, a.status, a.response_time_ms, a.group),
            ("127.0.0.1:18082", Some(200), Some(4), 0)
        );
        assert!(a.is_address() && r.failed().is_empty());
        assert_eq!(r.proxy_host, Some("app"));
        assert_eq!(r.request_uri, "/a?b=c");
    }

    #[test]
    fn retries_and_internal_redirects_end_at_the_last_address() {
        let l = line([
            "1.000",
            "404",
            "0.010",
            "10.0.0.1:80, 10.0.0.2:80 : 10.0.0.3:80",
            "502, 504 : 404",
            "0.000, 1.001 : 0.006",
            "other",
            "1.2.3.4",
            "h",
            "/",
        ]);
        let r = parse_line(&l).unwrap();
        let targets: Vec<(&str, u16, Option<u16>, Option<u64>)> = r
            .attempts
            .iter()
            .map(|a| (a.target, a.group, a.status, a.response_time_ms))
            .collect();
        assert_eq!(
            targets,
            vec![
                ("10.0.0.1:80", 0, Some(502), Some(0)),
                ("10.0.0.2:80", 0, Some(504), Some(1001)),
                ("10.0.0.3:80", 1, Some(404), Some(6)),
            ]
        );
        assert_eq!(r.answered().unwrap().target, "10.0.0.3:80");
        assert_eq!(r.failed().len(), 2);
    }

    #[test]
    fn a_group_name_means_no_server_was_selectable() {
        let l = line([
            "1.0", "502", "0.000", "dead", "502", "0.000", "dead", "::1", "h", "/",
        ]);
        let r = parse_line(&l).unwrap();
        let a = r.answered().unwrap();
        assert_eq!(a.target, "dead");
        assert!(!a.is_address());
        // Unix sockets and IPv6 are addresses.
        for t in ["unix:/run/app.sock", "[::1]:8080"] {
            let a = Attempt {
                target: t,
                group: 0,
                status: None,
                response_time_ms: None,
            };
            assert!(a.is_address(), "{t}");
        }
    }

    #[test]
    fn no_upstream_is_no_attempt() {
        let l = line([
            "1.0", "200", "0.000", "-", "-", "-", "-", "1.2.3.4", "h", "/st",
        ]);
        let r = parse_line(&l).unwrap();
        assert!(r.attempts.is_empty() && r.answered().is_none());
        assert_eq!(r.proxy_host, None);
    }

    #[test]
    fn a_client_gone_before_the_answer_has_no_status() {
        let l = line([
            "1.0",
            "499",
            "2.000",
            "10.0.0.1:80",
            "-",
            "-",
            "app",
            "1.2.3.4",
            "h",
            "/",
        ]);
        let a = *parse_line(&l).unwrap().answered().unwrap();
        assert_eq!((a.status, a.response_time_ms), (None, None));
    }

    #[test]
    fn quotes_and_backslashes_in_values_do_not_end_a_field() {
        // Default escaping writes `"` as \x22; JSON escaping writes \".
        let l = line([
            "1.0",
            "200",
            "0.001",
            "10.0.0.1:80",
            "200",
            "0.001",
            "app",
            "1.2.3.4",
            "h\\\"x",
            "/a\\x22b\\x5Cc d",
        ]);
        let r = parse_line(&l).unwrap();
        assert_eq!(r.request_uri, "/a\"b\\c d");
        assert_eq!(r.host, "h\"x");
        assert_eq!(unescape("\\u00e9t\\u00e9"), "été");
    }

    #[test]
    fn bad_lines_are_errors_that_say_what_is_wrong() {
        let good = line([
            "1.0",
            "200",
            "0.001",
            "10.0.0.1:80",
            "200",
            "0.001",
            "app",
            "1.2.3.4",
            "h",
            "/",
        ]);
        let cases: Vec<(String, &str)> = vec![
            (
                "127.0.0.1 - - [01/Jan/2026] \"GET / HTTP/1.1\" 200".into(),
                "not in ballast's format",
            ),
            (good[..good.len() - 1].to_string(), "no closing quote"),
            (
                good.replace("\"200\" \"0.001\" \"10", "\"2x\" \"0.001\" \"10"),
                "`$status`",
            ),
            (good.replace("\"10.0.0.1:80\"", "\"a, b\""), "more attempts"),
            (
                good.replace("\"200\" \"0.001\" \"app", "\"200, 200\" \"0.001\" \"app"),
                "more attempts",
            ),
            (
                good.replace("\"10.0.0.1:80\"", "\"a : b\""),
                "more attempts",
            ),
            (format!("{good} \"extra\""), "more fields"),
            ("ballast1".into(), "missing"),
            ("".into(), "not in ballast's format"),
        ];
        for (l, part) in cases {
            let e = parse_line(&l).expect_err(&l);
            assert!(e.what.contains(part), "{l}: {e}");
        }
    }

    #[test]
    fn seconds_are_read_exactly() {
        assert_eq!(seconds_to_ms("0.004"), Some(4));
        assert_eq!(seconds_to_ms("12"), Some(12_000));
        assert_eq!(seconds_to_ms("1.5"), Some(1_500));
        assert_eq!(seconds_to_ms("1.23456"), Some(1_234));
        for bad in ["", ".5", "-1", "1.x", "1e3", "99999999999999999999"] {
            assert_eq!(seconds_to_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn no_input_panics() {
        // Every prefix of a valid line and every byte value spliced in: errors, never panics.
        let l = line([
            "1.0",
            "200",
            "0.001",
            "10.0.0.1:80, 10.0.0.2:80 : x",
            "502, 200 : 502",
            "0.0, 0.1 : 0.0",
            "app",
            "1.2.3.4",
            "h\\x22",
            "/\\u00e9",
        ]);
        for i in 0..=l.len() {
            if l.is_char_boundary(i) {
                let _ = parse_line(&l[..i]);
                for c in ['"', '\\', ',', ':', ' ', 'é'] {
                    let mut s = l.clone();
                    s.insert(i, c);
                    let _ = parse_line(&s);
                }
            }
        }
        assert!(parse_line(&l).is_ok());
    }
}
