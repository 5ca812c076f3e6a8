//! What each request carries: one of several paths chosen by weight (`--url URL=WEIGHT`), and a
//! hash-key value drawn from the simulator's key model (`k0`, `k1`, ... with `cardinality`
//! values and a Zipf skew: `ballast_sim::model::Popularity`, the same draw `simulate` makes) put
//! in a header, a cookie or a query parameter; and the source addresses connections bind to
//! (`--source-range`). Parsing the flags and building each request's bytes; pure and seeded.

use std::net::{IpAddr, Ipv4Addr};

use ballast_sim::model::Popularity;
use rand::{Rng, RngExt};

use crate::h1;
use crate::plan::Target;

/// Where the key value goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlace {
    Header(String),
    Cookie(String),
    Query(String),
}

impl KeyPlace {
    /// `header:X-Tenant`, `cookie:session`, `query:user`.
    pub fn parse(text: &str) -> Result<KeyPlace, String> {
        let (kind, name) = text.split_once(':').ok_or_else(|| {
            format!("--key `{text}`: write header:NAME, cookie:NAME or query:NAME")
        })?;
        let name = name.trim();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(format!(
                "--key `{text}`: `{name}` is not a usable name (letters, digits, - _ .)"
            ));
        }
        match kind.trim() {
            "header" => Ok(KeyPlace::Header(name.to_string())),
            "cookie" => Ok(KeyPlace::Cookie(name.to_string())),
            "query" => Ok(KeyPlace::Query(name.to_string())),
            other => Err(format!(
                "--key `{text}`: `{other}` is not a place; use header, cookie or query"
            )),
        }
    }
}

/// The hash key's values: the simulator's key model.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    pub place: KeyPlace,
    /// Distinct values, `k0` .. `k{cardinality-1}`.
    pub cardinality: u32,
    /// Zipf exponent (0 = uniform): `k0` the most popular.
    pub zipf: f64,
    /// Fraction of requests sent without the key, 0..1.
    pub missing: f64,
}

/// `uniform` or `zipf:1.1`: the Zipf exponent.
pub fn parse_skew(text: &str) -> Result<f64, String> {
    let text = text.trim();
    if text == "uniform" {
        return Ok(0.0);
    }
    text.strip_prefix("zipf:")
        .and_then(|e| e.trim().parse::<f64>().ok())
        .filter(|e| e.is_finite() && *e >= 0.0)
        .ok_or_else(|| {
            format!("--key-skew `{text}`: write uniform or zipf:EXPONENT (e.g. zipf:1.1)")
        })
}

/// `--url URL=WEIGHT`: the last `=NUMBER` is the weight (1 when there is none), so a URL whose
/// query ends in `=number` needs its weight written: `http://h/?id=2=1`.
pub fn parse_weighted_url(text: &str) -> Result<(Target, f64), String> {
    let (url, weight) = match text.rsplit_once('=') {
        Some((url, w)) if url.contains("://") => match w.trim().parse::<f64>() {
            Ok(w) => (url, w),
            Err(_) => (text, 1.0),
        },
        _ => (text, 1.0),
    };
    if !(weight.is_finite() && weight > 0.0) {
        return Err(format!(
            "--url `{text}`: the weight {weight} must be above 0"
        ));
    }
    Ok((Target::parse(url.trim())?, weight))
}

/// A `--urls FILE`: one `URL` or `URL=WEIGHT` (or `WEIGHT URL`) a line; `#` comments.
pub fn parse_url_file(text: &str) -> Result<Vec<(Target, f64)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let parsed = match line.split_once(char::is_whitespace) {
            Some((w, url)) if w.parse::<f64>().is_ok() => {
                parse_weighted_url(&format!("{}={w}", url.trim()))
            }
            _ => parse_weighted_url(line),
        };
        out.push(parsed.map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    if out.is_empty() {
        return Err("the URL file names no URL".into());
    }
    Ok(out)
}

/// `127.0.0.2-127.0.0.50` (or one address): the addresses, in order. At most 65,536.
pub fn parse_source_range(text: &str) -> Result<Vec<IpAddr>, String> {
    let (from, to) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| {
        s.trim().parse::<Ipv4Addr>().map_err(|_| {
            format!(
                "--source-range `{text}`: `{s}` is not an IPv4 address (write 127.0.0.2-127.0.0.50)"
            )
        })
    };
    let (from, to) = (u32::from(parse(from)?), u32::from(parse(to)?));
    if to < from {
        return Err(format!("--source-range `{text}`: the range runs backwards"));
    }
    if to - from >= 65_536 {
        return Err(format!(
            "--source-range `{text}`: more than 65,536 addresses"
        ));
    }
    Ok((from..=to).map(|a| IpAddr::V4(Ipv4Addr::from(a))).collect())
}

/// One drawn request, before it is serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drawn<'a> {
    pub target: &'a Target,
    /// The path and query, with the key's query parameter when it goes there.
    pub path: String,
    /// The plan's headers, then the key's header or cookie when it goes there.
    pub headers: Vec<(String, String)>,
}

/// Builds each request's bytes from the plan's URLs, key and fixed parts.
pub struct Requests {
    urls: Vec<Target>,
    /// Cumulative weights, the last the total.
    cumulative: Vec<f64>,
    key: Option<(KeySpec, Popularity)>,
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The only request there is, when nothing varies.
    fixed: Option<Vec<u8>>,
}

impl Requests {
    pub fn new(
        urls: &[(Target, f64)],
        key: Option<&KeySpec>,
        method: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Requests {
        let mut total = 0.0;
        let cumulative = urls
            .iter()
            .map(|(_, w)| {
                total += w;
                total
            })
            .collect();
        let fixed = (urls.len() == 1 && key.is_none()).then(|| {
            let t = &urls[0].0;
            h1::serialise(method, &t.path, &t.authority, headers, body)
        });
        Requests {
            urls: urls.iter().map(|(t, _)| t.clone()).collect(),
            cumulative,
            key: key.map(|k| (k.clone(), Popularity::new(k.cardinality, k.zipf))),
            method: method.to_string(),
            headers: headers.to_vec(),
            body: body.to_vec(),
            fixed,
        }
    }

    /// The next request's bytes: the fixed one, or one built into `scratch`.
    pub fn next<'a>(&'a self, rng: &mut impl Rng, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if let Some(fixed) = &self.fixed {
            return fixed;
        }
        let drawn = self.draw(rng);
        *scratch = h1::serialise(
            &self.method,
            &drawn.path,
            &drawn.target.authority,
            &drawn.headers,
            &self.body,
        );
        scratch
    }

    /// The next request's parts (its URL, its path with any key parameter, its headers with
    /// any key header or cookie): what [`Requests::next`] serialises, and what `--prediction`
    /// hands the simulator.
    pub fn draw(&self, rng: &mut impl Rng) -> Drawn<'_> {
        let target = self.pick(rng);
        let key = self.key.as_ref().and_then(|(spec, popularity)| {
            let missing = spec.missing > 0.0 && rng.random::<f64>() < spec.missing;
            (!missing).then(|| (spec, format!("k{}", popularity.sample(rng))))
        });
        let mut path = target.path.clone();
        let mut headers = self.headers.clone();
        if let Some((spec, value)) = key {
            match &spec.place {
                KeyPlace::Header(name) => headers.push((name.clone(), value)),
                KeyPlace::Cookie(name) => {
                    headers.push(("Cookie".into(), format!("{name}={value}")));
                }
                KeyPlace::Query(name) => {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    path = format!("{path}{sep}{name}={value}");
                }
            }
        }
        Drawn {
            target,
            path,
            headers,
        }
    }

    /// The method every request uses.
    pub fn method(&self) -> &str {
        &self.method
    }

    fn pick(&self, rng: &mut impl Rng) -> &Target {
        if self.urls.len() == 1 {
            return &self.urls[0];
        }
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let at = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|c| *c <= at);
        &self.urls[i.min(self.urls.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::collections::BTreeMap;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    fn request_line(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn flags_parse_and_nonsense_is_refused() {
        assert_eq!(
            KeyPlace::parse("header:X-Tenant"),
            Ok(KeyPlace::Header("X-Tenant".into()))
        );
        assert_eq!(
            KeyPlace::parse("cookie:sid"),
            Ok(KeyPlace::Cookie("sid".into()))
        );
        assert_eq!(
            KeyPlace::parse("query:user"),
            Ok(KeyPlace::Query("user".into()))
        );
        assert!(
            KeyPlace::parse("body:x")
                .unwrap_err()
                .contains("not a place")
        );
        assert!(KeyPlace::parse("header").is_err());
        assert!(KeyPlace::parse("header:a b").is_err());
        assert_eq!(parse_skew("zipf:1.1"), Ok(1.1));
        assert_eq!(parse_skew("uniform"), Ok(0.0));
        assert!(parse_skew("zipf:-1").is_err());
        let (t, w) = parse_weighted_url("http://127.0.0.1:8/a=3").unwrap();
        assert_eq!((t.path.as_str(), w), ("/a", 3.0));
        let (t, w) = parse_weighted_url("http://127.0.0.1:8/?q=x").unwrap();
        assert_eq!((t.path.as_str(), w), ("/?q=x", 1.0));
        assert!(parse_weighted_url("http://h/=0").is_err());
        let file = parse_url_file("# paths\nhttp://h/a=2\n3 http://h/b\nhttp://h/c\n").unwrap();
        assert_eq!(
            file.iter()
                .map(|(t, w)| (t.path.as_str(), *w))
                .collect::<Vec<_>>(),
            [("/a", 2.0), ("/b", 3.0), ("/c", 1.0)]
        );
        assert!(parse_url_file("ftp://x\n").unwrap_err().contains("line 1"));
        let range = parse_source_range("127.0.0.2-127.0.0.5").unwrap();
        assert_eq!(range.len(), 4);
        assert_eq!(range[3].to_string(), "127.0.0.5");
        assert!(parse_source_range("127.0.0.5-127.0.0.2").is_err());
        assert!(parse_source_range("::1").is_err());
    }

    #[test]
    fn urls_are_drawn_by_weight() {
        let r = Requests::new(
            &[(target("http://h/a"), 3.0), (target("http://h/b"), 1.0)],
            None,
            "GET",
            &[],
            b"",
        );
        let mut rng = SmallRng::seed_from_u64(1);
        let mut scratch = Vec::new();
        let a = (0..10_000)
            .filter(|_| request_line(r.next(&mut rng, &mut scratch)).starts_with("GET /a "))
            .count();
        assert!(
            (7_300..7_700).contains(&a),
            "{a} of 10,000 for weight 3 of 4"
        );
    }

    #[test]
    fn keys_are_zipf_skewed_and_placed_where_asked() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut scratch = Vec::new();
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        let header = KeySpec {
            place: KeyPlace::Header("X-Tenant".into()),
            cardinality: 10,
            zipf: 1.1,
            missing: 0.0,
        };
        let r = Requests::new(
            &[(target("http://h/x"), 1.0)],
            Some(&header),
            "GET",
            &[],
            b"",
        );
        for _ in 0..20_000 {
            let text = String::from_utf8_lossy(r.next(&mut rng, &mut scratch)).to_string();
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Tenant: "))
                .expect("the header")
                .to_string();
            *counts.entry(value).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 10, "{counts:?}");
        // Zipf(10, 1.1): k0 takes 1/H where H = sum 1/i^1.1 (about 2.59): about 38.6%.
        let h: f64 = (1..=10).map(|i| 1.0 / f64::from(i).powf(1.1)).sum();
        let k0 = f64::from(counts["k0"]) / 20_000.0;
        assert!(
            (k0 - 1.0 / h).abs() < 0.02,
            "k0 share {k0} against {}",
            1.0 / h
        );
        assert!(counts["k0"] > counts["k1"] && counts["k1"] > counts["k9"]);

        let cookie = KeySpec {
            place: KeyPlace::Cookie("sid".into()),
            missing: 0.5,
            ..header.clone()
        };
        let r = Requests::new(
            &[(target("http://h/x"), 1.0)],
            Some(&cookie),
            "GET",
            &[],
            b"",
        );
        let with = (0..2_000)
            .filter(|_| {
                String::from_utf8_lossy(r.next(&mut rng, &mut scratch))
                    .contains("\r\nCookie: sid=k")
            })
            .count();
        assert!(
            (850..1_150).contains(&with),
            "{with} of 2,000 with half missing"
        );

        let query = KeySpec {
            place: KeyPlace::Query("user".into()),
            ..header
        };
        let r = Requests::new(
            &[(target("http://h/x?a=1"), 1.0)],
            Some(&query),
            "GET",
            &[],
            b"",
        );
        let line = request_line(r.next(&mut rng, &mut scratch));
        assert!(line.starts_with("GET /x?a=1&user=k"), "{line}");
    }
}
