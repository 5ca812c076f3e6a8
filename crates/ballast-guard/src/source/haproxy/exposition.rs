//! The built-in Prometheus exporter (`http-request use-service prometheus-exporter`): a small
//! reader of the text exposition format (`name{label="v",...} value [timestamp]`), and the
//! mapping of HAProxy's metric families onto the same `show stat` columns, so one mapping
//! turns both into a sample.
//!
//! A crate was considered: `prometheus-parse` brings regex, chrono and lazy_static for the few
//! lines of grammar HAProxy writes, so the reader is these lines, tested on real output.

use std::collections::BTreeMap;

use super::ParseError;
use super::stat::StatTable;

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Metric {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Parses the text exposition format: `# HELP`/`# TYPE` and other comments and blank lines
/// are skipped; every other line must be a sample.
pub fn parse_exposition(text: &str) -> Result<Vec<Metric>, ParseError> {
    let mut metrics = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        metrics.push(parse_line(line).map_err(|what| ParseError::new(i + 1, what))?);
    }
    Ok(metrics)
}

fn parse_line(line: &str) -> Result<Metric, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| format!("`{}` has a name and no value", super::stat::cut(line)))?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("`{}` is not a metric name", super::stat::cut(name)));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut parts = rest.split_whitespace();
    let value = parts
        .next()
        .ok_or_else(|| format!("metric `{name}` has no value"))?;
    let value = parse_value(value)
        .ok_or_else(|| format!("metric `{name}` has value `{value}`, not a number"))?;
    // An optional timestamp may follow; anything more is not the format.
    if let Some(ts) = parts.next()
        && (ts.parse::<i64>().is_err() || parts.next().is_some())
    {
        return Err(format!("metric `{name}` has text after its value"));
    }
    Ok(Metric {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Reads `k="v",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| "a label without `=`".to_string())?;
        let key = rest[..eq].trim();
        if key.is_empty() {
            return Err("a label without a name".into());
        }
        let after = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("label `{key}` has an unquoted value"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label `{key}`'s value is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label `{key}`'s value is not closed")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// The `show stat` columns the exporter's families fill, by family suffix, for frontends,
/// backends and servers (`haproxy_server_current_sessions` → `scur`).
const COLUMNS: &[(&str, &str)] = &[
    ("current_sessions", "scur"),
    ("limit_sessions", "slim"),
    ("current_queue", "qcur"),
    ("queue_limit", "qlimit"),
    ("loadbalanced_total", "lbtot"),
    ("weight", "weight"),
    ("uweight", "uweight"),
    ("denied_connections_total", "dcon"),
    ("denied_sessions_total", "dses"),
];

/// The exporter's families as a `show stat` table: one row per frontend, backend and server
/// (`type` 0, 1, 2), with the columns the sample mapping reads. Times in seconds become the
/// CSV's milliseconds; `haproxy_server_status{state=...}` becomes the `status` text; the
/// exporter has no `algo` and no per-server `bck`, so those stay absent (the configuration
/// file supplies them when given).
pub fn stat_table(metrics: &[Metric]) -> StatTable {
    type Key = (u8, String, String);
    let mut rows: BTreeMap<Key, BTreeMap<&'static str, String>> = BTreeMap::new();
    for m in metrics {
        let (kind, family) = if let Some(f) = m.name.strip_prefix("haproxy_frontend_") {
            (0u8, f)
        } else if let Some(f) = m.name.strip_prefix("haproxy_backend_") {
            (1, f)
        } else if let Some(f) = m.name.strip_prefix("haproxy_server_") {
            (2, f)
        } else {
            continue;
        };
        let Some(proxy) = m.label("proxy") else {
            continue;
        };
        let svname = match kind {
            0 => "FRONTEND",
            1 => "BACKEND",
            _ => match m.label("server") {
                Some(s) => s,
                None => continue,
            },
        };
        let row = rows
            .entry((kind, proxy.to_string(), svname.to_string()))
            .or_default();
        let whole = || format!("{}", m.value.max(0.0).round() as u64);
        if let Some(&(_, column)) = COLUMNS.iter().find(|(f, _)| *f == family) {
            row.insert(column, whole());
        } else if family == "http_responses_total" {
            let column = match m.label("code") {
                Some("1xx") => "hrsp_1xx",
                Some("2xx") => "hrsp_2xx",
                Some("3xx") => "hrsp_3xx",
                Some("4xx") => "hrsp_4xx",
                Some("5xx") => "hrsp_5xx",
                Some("other") => "hrsp_other",
                _ => continue,
            };
            row.insert(column, whole());
        } else if family == "response_time_average_seconds" {
            row.insert(
                "rtime",
                format!("{}", (m.value * 1000.0).round().max(0.0) as u64),
            );
        } else if family == "status"
            && m.value >= 1.0
            && let Some(state) = m.label("state")
        {
            row.insert("status", state.to_string());
        }
    }
    let mut columns = vec!["pxname", "svname", "type", "status", "rtime"];
    columns.extend(COLUMNS.iter().map(|(_, c)| *c));
    columns.extend([
        "hrsp_1xx",
        "hrsp_2xx",
        "hrsp_3xx",
        "hrsp_4xx",
        "hrsp_5xx",
        "hrsp_other",
    ]);
    let mut table = StatTable::with_columns(&columns);
    for ((kind, proxy, svname), fields) in rows {
        let mut values: Vec<(&str, String)> = vec![
            ("pxname", proxy),
            ("svname", svname),
            ("type", kind.to_string()),
        ];
        values.extend(fields);
        table.push_row(&values);
    }
    table
}

/// The process figures the exporter gives: current and maximum connections and what changes
/// on a reload (its start time; the exporter gives no pid).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedProcess {
    pub current_connections: Option<u64>,
    pub max_connections: Option<u64>,
    pub start_time_seconds: Option<u64>,
}

pub fn process(metrics: &[Metric]) -> ExportedProcess {
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value.max(0.0).round() as u64)
    };
    ExportedProcess {
        current_connections: find("haproxy_process_current_connections"),
        max_connections: find("haproxy_process_max_connections"),
        start_time_seconds: find("haproxy_process_start_time_seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = include_str!("testdata/exporter.txt");

    #[test]
    fn the_captured_exposition_parses() {
        let metrics = parse_exposition(CAPTURED).expect("parses");
        assert!(metrics.len() > 500, "{}", metrics.len());
        let lb = metrics
            .iter()
            .find(|m| {
                m.name == "haproxy_server_loadbalanced_total"
                    && m.label("proxy") == Some("app")
                    && m.label("server") == Some("s3")
            })
            .expect("app/s3's counter");
        assert_eq!(lb.value, 13.0);
        let p = process(&metrics);
        assert_eq!(p.max_connections, Some(500));
        assert!(p.start_time_seconds.is_some_and(|s| s > 1_600_000_000));
    }

    #[test]
    fn the_exporter_maps_onto_the_csv_columns() {
        let metrics = parse_exposition(CAPTURED).unwrap();
        let table = stat_table(&metrics);
        let csv = super::super::stat::parse_stat(include_str!("testdata/show_stat.csv")).unwrap();
        // The exporter and the CSV were captured from the same process, one after the other.
        for server in ["s1", "s2", "s3", "s4", "s5", "b1"] {
            let find = |t: &StatTable| {
                let row = t
                    .rows()
                    .find(|r| r.get("pxname") == Some("app") && r.get("svname") == Some(server))
                    .expect(server);
                (
                    row.number("lbtot").unwrap(),
                    row.number("weight").unwrap(),
                    row.number("hrsp_2xx").unwrap(),
                    row.get("type").map(str::to_string),
                )
            };
            assert_eq!(find(&table), find(&csv), "{server}");
        }
        let s1 = table
            .rows()
            .find(|r| r.get("svname") == Some("s1"))
            .unwrap();
        assert_eq!(s1.number("slim").unwrap(), Some(10));
        assert_eq!(s1.number("qlimit").unwrap(), Some(5));
        assert_eq!(s1.get("status"), Some("UP"));
    }

    #[test]
    fn labels_escapes_and_special_values() {
        let m = parse_exposition(
            "# HELP x y\nx{a=\"q\\\"u\\\\o\\nte\", b = \"2\",} 1.5e3 1700000000\ny +Inf\nz NaN\n",
        )
        .unwrap();
        assert_eq!(m[0].label("a"), Some("q\"u\\o\nte"));
        assert_eq!(m[0].label("b"), Some("2"));
        assert_eq!(m[0].value, 1500.0);
        assert!(m[1].value.is_infinite() && m[2].value.is_nan());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "x",
            "x{a=\"1\"}",
            "x{a=1} 2",
            "x{a=\"1} 2",
            "x{=\"1\"} 2",
            "x two",
            "x 1 2 3",
            "x-y 1",
            "{a=\"b\"} 1",
            "x{a=\"\\",
        ] {
            assert!(parse_exposition(bad).is_err(), "{bad:?}");
        }
        assert!(parse_exposition("<html>").is_err());
        assert_eq!(parse_exposition("# only comments\n\n").unwrap(), Vec::new());
    }
}
