//! Words with spans, versions and the time formats of HAProxy and nginx.

use std::ops::Range;
use std::time::Duration;

/// One word of a directive, unquoted, with the span of its text in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub span: Range<usize>,
}

/// A directive: its words (the first is the keyword) and the span from first to last word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub words: Vec<Word>,
    pub span: Range<usize>,
}

impl Directive {
    pub fn name(&self) -> &str {
        &self.words[0].text
    }
    pub fn args(&self) -> &[Word] {
        &self.words[1..]
    }
    pub fn arg(&self, i: usize) -> Option<&Word> {
        self.words.get(i + 1)
    }
    /// The directive as written, words joined by one space.
    pub fn text(&self) -> String {
        self.words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A load balancer version, `major.minor[.patch]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.trim().split('.').map(|p| p.parse::<u32>());
        let bad = || format!("`{s}` is not a version; write it like 2.6 or 1.22.1");
        let major = parts.next().ok_or_else(bad)?.map_err(|_| bad())?;
        let minor = parts.next().unwrap_or(Ok(0)).map_err(|_| bad())?;
        let patch = parts.next().unwrap_or(Ok(0)).map_err(|_| bad())?;
        Ok(Self::new(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Versions are given as X.Y; a patch level is shown only when there is one.
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

/// A HAProxy time (a bare number is milliseconds), read as HAProxy 2.6 reads it: letters
/// after a valid unit are warned about, not refused (`15min` is `15m`, `5sec` is `5s`).
pub fn haproxy_time(text: &str) -> Option<Duration> {
    parse_time(text, 1).or_else(|| parse_time(haproxy_time_read_part(text)?, 1))
}

/// The part HAProxy reads of a time with letters after its unit (`15m` of `15min`); `None`
/// when there are no such letters.
pub fn haproxy_time_read_part(text: &str) -> Option<&str> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    if digits == 0 {
        return None;
    }
    let rest = &text[digits..];
    let unit = ["us", "ms", "s", "m", "h", "d"]
        .into_iter()
        .find(|u| rest.starts_with(u))?;
    let read = &text[..digits + unit.len()];
    let after = &text[read.len()..];
    (!after.is_empty() && after.chars().all(|c| c.is_ascii_alphabetic())).then_some(read)
}

/// A time with an optional unit; `default_unit_ms` is what a bare number means (HAProxy:
/// 1 ms; nginx: 1000 ms). Units: us, ms, s, m, h, d.
pub fn parse_time(text: &str, default_unit_ms: u64) -> Option<Duration> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return None;
    }
    let n: u64 = t[..digits].parse().ok()?;
    let unit = &t[digits..];
    let d = match unit {
        "" => Duration::from_millis(n.checked_mul(default_unit_ms)?),
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    };
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_versions() {
        assert_eq!(parse_time("5000", 1), Some(Duration::from_secs(5)));
        assert_eq!(parse_time("5s", 1), Some(Duration::from_secs(5)));
        assert_eq!(parse_time("60", 1000), Some(Duration::from_secs(60)));
        assert_eq!(parse_time("1m", 1000), Some(Duration::from_secs(60)));
        assert_eq!(parse_time("x", 1), None);
        assert_eq!(parse_time("5parsecs", 1), None);
        assert_eq!("2.6".parse::<Version>(), Ok(Version::new(2, 6, 0)));
        assert!("two".parse::<Version>().is_err());
    }
}
