//! `show info`: the process's `Key: value` lines (`Pid`, `Uptime_sec`, `Maxconn`,
//! `CurrConns`, `Start_time_sec`…), kept by key.

use std::collections::BTreeMap;

use super::ParseError;

/// A parsed `show info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    fields: BTreeMap<String, String>,
}

impl Info {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A numeric field: `Ok(None)` when absent, an error when it is not a number.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ParseError::new(
                    0,
                    format!("`show info` gives {key}: `{v}`, not a whole number"),
                )
            }),
        }
    }

    /// What changes when HAProxy restarts or reloads: the process id and its start time
    /// (a reload with `-sf` starts a new process; a pid alone could be reused).
    pub fn generation(&self) -> Option<String> {
        let pid = self.get("Pid")?;
        Some(match self.get("Start_time_sec") {
            Some(start) => format!("pid {pid} started {start}"),
            None => format!("pid {pid}"),
        })
    }
}

/// Parses `show info` output. Every non-empty line must be `Key: value`; the output must name
/// the process (`Pid`), or it is not `show info`.
pub fn parse_info(text: &str) -> Result<Info, ParseError> {
    let mut fields = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(ParseError::new(
                i + 1,
                format!(
                    "`{}` is not a `Key: value` line of `show info`",
                    super::stat::cut(line)
                ),
            ));
        };
        fields.insert(key.trim().to_string(), value.trim().to_string());
    }
    if !fields.contains_key("Pid") {
        return Err(ParseError::new(
            0,
            "the output has no `Pid:` line: it is not HAProxy's `show info`",
        ));
    }
    Ok(Info { fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_captured_info_gives_limits_and_generation() {
        let info = parse_info(include_str!("testdata/show_info.txt")).expect("parses");
        assert_eq!(info.number("Maxconn").unwrap(), Some(500));
        assert_eq!(info.number("CurrConns").unwrap(), Some(0));
        assert_eq!(info.get("Version"), Some("2.6.12-1+deb12u4"));
        let pid = info.get("Pid").unwrap();
        let generation = info.generation().unwrap();
        assert!(generation.contains(pid) && generation.contains("started"));
        // A value holding a colon keeps it.
        let info = parse_info("Pid: 7\nnode: a:b\n").unwrap();
        assert_eq!(info.get("node"), Some("a:b"));
        assert_eq!(info.generation().as_deref(), Some("pid 7"));
    }

    #[test]
    fn other_text_is_an_error() {
        for bad in [
            "",
            "Unknown command\n",
            "Maxconn: 5\n",
            "Pid: 1\nno colon here\n",
        ] {
            assert!(parse_info(bad).is_err(), "{bad:?}");
        }
        let info = parse_info("Pid: 1\nMaxconn: lots\n").unwrap();
        assert!(info.number("Maxconn").is_err());
    }
}
