//! `show servers state`: a format version line, a `# be_id be_name srv_id srv_name ...` header,
//! then one space-separated row per server. Read by header, as `show stat`. It carries what
//! the CSV does not: the configured weight beside the live one (`srv_iweight`, `srv_uweight`)
//! and why a server is out (`srv_admin_state` bits).

use std::collections::HashMap;

use super::ParseError;

/// `srv_admin_state` bits (HAProxy's `enum srv_admin`).
pub mod admin {
    /// Forced into maintenance (`disable server`, `set server ... state maint`).
    pub const FMAINT: u32 = 0x01;
    /// In maintenance because the server it tracks is.
    pub const IMAINT: u32 = 0x02;
    /// In maintenance from the configuration (`disabled`).
    pub const CMAINT: u32 = 0x04;
    /// Forced to drain (`set server ... state drain`).
    pub const FDRAIN: u32 = 0x08;
    /// Draining because the server it tracks is.
    pub const IDRAIN: u32 = 0x10;
    /// In maintenance because its name did not resolve.
    pub const RMAINT: u32 = 0x20;
    /// In maintenance because its hostname changed (`set server ... fqdn`).
    pub const HMAINT: u32 = 0x40;
    pub const ANY_MAINT: u32 = FMAINT | IMAINT | CMAINT | RMAINT | HMAINT;
    pub const ANY_DRAIN: u32 = FDRAIN | IDRAIN;
}

/// One server's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStateRow {
    pub backend: String,
    pub server: String,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub operational: u32,
    /// `srv_admin_state` bits, see [`admin`].
    pub admin: u32,
    /// The weight in force (`srv_uweight`).
    pub user_weight: u32,
    /// The weight the configuration gives (`srv_iweight`): differs after `set weight`.
    pub initial_weight: u32,
}

impl ServerStateRow {
    pub fn in_maintenance(&self) -> bool {
        self.admin & admin::ANY_MAINT != 0
    }

    pub fn draining(&self) -> bool {
        self.admin & admin::ANY_DRAIN != 0
    }

    /// Changed at run time: a weight set over the runtime API, or forced out.
    pub fn runtime_changed(&self) -> bool {
        self.user_weight != self.initial_weight || self.admin & (admin::FMAINT | admin::FDRAIN) != 0
    }
}

/// Parses `show servers state` output (format version 1).
pub fn parse_servers_state(text: &str) -> Result<Vec<ServerStateRow>, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((vi, version)) = lines.next() else {
        return Err(ParseError::new(
            1,
            "the `show servers state` output is empty",
        ));
    };
    if version.trim() != "1" {
        return Err(ParseError::new(
            vi + 1,
            format!(
                "`show servers state` format `{}` is not version 1, the one ballast reads",
                super::stat::cut(version.trim())
            ),
        ));
    }
    let Some((hi, header)) = lines.next() else {
        // A version line alone: HAProxy has no backend with servers.
        return Ok(Vec::new());
    };
    let Some(header) = header.strip_prefix('#') else {
        return Err(ParseError::new(
            hi + 1,
            "the second line is not the `# be_id be_name ...` header",
        ));
    };
    let columns: HashMap<&str, usize> = header
        .split_whitespace()
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    let column = |name: &str| {
        columns
            .get(name)
            .copied()
            .ok_or_else(|| ParseError::new(hi + 1, format!("the header has no `{name}` column")))
    };
    let (be, srv, op, adm, uw, iw) = (
        column("be_name")?,
        column("srv_name")?,
        column("srv_op_state")?,
        column("srv_admin_state")?,
        column("srv_uweight")?,
        column("srv_iweight")?,
    );
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |at: usize, name: &str| {
            fields
                .get(at)
                .copied()
                .ok_or_else(|| ParseError::new(i + 1, format!("the row has no `{name}` field")))
        };
        let number = |at: usize, name: &str| -> Result<u32, ParseError> {
            let text = field(at, name)?;
            text.parse().map_err(|_| {
                ParseError::new(i + 1, format!("`{name}` is `{text}`, not a whole number"))
            })
        };
        rows.push(ServerStateRow {
            backend: field(be, "be_name")?.to_string(),
            server: field(srv, "srv_name")?.to_string(),
            operational: number(op, "srv_op_state")?,
            admin: number(adm, "srv_admin_state")?,
            user_weight: number(uw, "srv_uweight")?,
            initial_weight: number(iw, "srv_iweight")?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(rows: &'a [ServerStateRow], server: &str) -> &'a ServerStateRow {
        rows.iter()
            .find(|r| r.backend == "app" && r.server == server)
            .expect(server)
    }

    #[test]
    fn the_captured_states_show_runtime_changes() {
        let before = parse_servers_state(include_str!("testdata/show_servers_state.txt")).unwrap();
        assert_eq!(before.len(), 8);
        assert!(before.iter().all(|r| !r.runtime_changed()));
        let after = parse_servers_state(include_str!(
            "testdata/show_servers_state_runtime_changes.txt"
        ))
        .unwrap();
        // `set weight app/s3 0`: live 0, configured 3.
        let s3 = find(&after, "s3");
        assert_eq!((s3.user_weight, s3.initial_weight), (0, 3));
        assert!(s3.runtime_changed());
        // `disable server app/s2`: forced maintenance; s5 tracks it and inherits it.
        let s2 = find(&after, "s2");
        assert!(s2.in_maintenance() && s2.admin & admin::FMAINT != 0);
        let s5 = find(&after, "s5");
        assert!(s5.in_maintenance() && s5.admin & admin::IMAINT != 0 && !s5.runtime_changed());
        // `set server app/s1 state drain`.
        let s1 = find(&after, "s1");
        assert!(s1.draining() && !s1.in_maintenance());
        // s4 fails its checks: stopped, not by an operator.
        let s4 = find(&after, "s4");
        assert_eq!((s4.operational, s4.admin), (0, 0));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(parse_servers_state("").is_err());
        assert!(parse_servers_state("2\n# be_name\n").is_err());
        assert!(parse_servers_state("1\nbe_name srv_name\n").is_err());
        assert!(parse_servers_state("1\n# be_name srv_name\n").is_err());
        let header = "1\n# be_id be_name srv_id srv_name srv_op_state srv_admin_state srv_uweight srv_iweight\n";
        assert!(parse_servers_state(&format!("{header}4 app 1 s1 2 x 1 1\n")).is_err());
        assert!(parse_servers_state(&format!("{header}4 app 1 s1 2\n")).is_err());
        assert_eq!(parse_servers_state("1\n").unwrap(), Vec::new());
        let rows = parse_servers_state(&format!("{header}4 app 1 s1 2 8 1 1\n")).unwrap();
        assert!(rows[0].draining());
    }
}
