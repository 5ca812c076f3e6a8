//! `show stat` CSV (the same text as the stats page's `;csv`): a table whose columns are named
//! by its first line. Columns are looked up by name, never by position: past the `-` column
//! HAProxy guarantees neither their order nor their presence, and a lower socket level blanks
//! some (`algo`, `addr`).

use std::collections::HashMap;

use super::ParseError;

/// The `type` column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowType {
    Frontend,
    Backend,
    Server,
    Listener,
}

/// A parsed `show stat` table: the header's column names and the rows' fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatTable {
    columns: HashMap<String, usize>,
    /// Each row's 1-based input line (0 for built tables) and its fields.
    rows: Vec<(usize, Vec<String>)>,
}

/// One row of a [`StatTable`], read by column name.
#[derive(Debug, Clone, Copy)]
pub struct StatRow<'a> {
    table: &'a StatTable,
    fields: &'a [String],
    line: usize,
}

impl StatTable {
    /// A table with the given columns and no rows (for sources that build one, as the
    /// exporter's mapping does).
    pub fn with_columns(columns: &[&str]) -> StatTable {
        StatTable {
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.to_string(), i))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row given as `(column, value)` pairs; columns the table lacks are dropped.
    pub fn push_row(&mut self, values: &[(&str, String)]) {
        let mut row = vec![String::new(); self.columns.len()];
        for (column, value) in values {
            if let Some(&i) = self.columns.get(*column) {
                row[i] = value.clone();
            }
        }
        self.rows.push((0, row));
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.columns.contains_key(name)
    }

    pub fn rows(&self) -> impl Iterator<Item = StatRow<'_>> {
        self.rows.iter().map(move |(line, fields)| StatRow {
            table: self,
            fields,
            line: *line,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl<'a> StatRow<'a> {
    /// The field of `column`: `None` when the table has no such column, `Some("")` when the
    /// row leaves it empty (HAProxy leaves fields that do not apply to a row's type empty).
    pub fn get(&self, column: &str) -> Option<&'a str> {
        let i = *self.table.columns.get(column)?;
        Some(self.fields.get(i).map(String::as_str).unwrap_or(""))
    }

    /// A field that is present and not empty.
    pub fn text(&self, column: &str) -> Option<&'a str> {
        self.get(column).filter(|v| !v.is_empty())
    }

    /// A numeric field; `Ok(None)` when absent or empty, an error when it is not a number.
    pub fn number(&self, column: &str) -> Result<Option<u64>, ParseError> {
        let Some(text) = self.text(column) else {
            return Ok(None);
        };
        text.parse::<u64>().map(Some).map_err(|_| {
            ParseError::new(
                self.line,
                format!(
                    "column `{column}` of {} holds `{text}`, not a whole number",
                    self.name()
                ),
            )
        })
    }

    /// `pxname/svname`, for messages.
    pub fn name(&self) -> String {
        format!(
            "{}/{}",
            self.get("pxname").unwrap_or("?"),
            self.get("svname").unwrap_or("?")
        )
    }

    pub fn line(&self) -> usize {
        self.line
    }

    /// The row's kind, from the `type` column (0 frontend, 1 backend, 2 server, 3 listener).
    pub fn row_type(&self) -> Result<RowType, ParseError> {
        match self.get("type") {
            Some("0") => Ok(RowType::Frontend),
            Some("1") => Ok(RowType::Backend),
            Some("2") => Ok(RowType::Server),
            Some("3") => Ok(RowType::Listener),
            Some(other) => Err(ParseError::new(
                self.line,
                format!(
                    "row {} has type `{other}`; HAProxy's types are 0 (frontend), 1 (backend), 2 (server) and 3 (listener)",
                    self.name()
                ),
            )),
            None => Err(ParseError::new(self.line, "the table has no `type` column")),
        }
    }
}

/// Parses `show stat` output. The first line must be the header (`# pxname,svname,...`);
/// blank lines are skipped; fields may be quoted (HAProxy quotes those holding a comma or a
/// quote, doubling inner quotes).
pub fn parse_stat(text: &str) -> Result<StatTable, ParseError> {
    let mut lines = text.lines().enumerate();
    let Some((header_index, header)) = lines.find(|(_, l)| !l.trim().is_empty()) else {
        return Err(ParseError::new(1, "the stats output is empty"));
    };
    let Some(header) = header.strip_prefix('#') else {
        return Err(ParseError::new(
            header_index + 1,
            format!(
                "the first line is not a `# pxname,svname,...` header but `{}`",
                cut(header)
            ),
        ));
    };
    let names = split_fields(header.trim_start(), header_index + 1)?;
    let mut columns = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        // The trailing comma gives an empty last name; `-` marks the end of the static fields.
        if !name.is_empty() && name != "-" {
            columns.entry(name).or_insert(i);
        }
    }
    for required in ["pxname", "svname", "type"] {
        if !columns.contains_key(required) {
            return Err(ParseError::new(
                header_index + 1,
                format!("the header has no `{required}` column"),
            ));
        }
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') {
            return Err(ParseError::new(
                i + 1,
                "a second header line: the output holds two tables (give one `show stat` per read)",
            ));
        }
        rows.push((i + 1, split_fields(line, i + 1)?));
    }
    Ok(StatTable { columns, rows })
}

/// Splits one CSV line into fields, honouring double quotes.
fn split_fields(line: &str, line_no: usize) -> Result<Vec<String>, ParseError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '"') if field.is_empty() => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err(ParseError::new(
            line_no,
            "a quoted field is not closed (the output was cut short?)",
        ));
    }
    fields.push(field);
    Ok(fields)
}

/// The start of a line, for messages.
pub(super) fn cut(line: &str) -> String {
    let short: String = line.chars().take(60).collect();
    if short.len() < line.len() {
        format!("{short}…")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = include_str!("testdata/show_stat.csv");

    #[test]
    fn the_captured_table_is_read_by_header() {
        let t = parse_stat(CAPTURED).expect("parses");
        // 2 frontends; app: 6 servers and its backend; api: 2 and its backend; empty.
        assert_eq!(t.len(), 13);
        let s3 = t
            .rows()
            .find(|r| r.get("pxname") == Some("app") && r.get("svname") == Some("s3"))
            .expect("app/s3");
        assert_eq!(s3.row_type().unwrap(), RowType::Server);
        assert_eq!(s3.number("weight").unwrap(), Some(3));
        assert_eq!(s3.number("lbtot").unwrap(), Some(13));
        assert_eq!(s3.get("status"), Some("no check"));
        // A column HAProxy leaves empty for servers.
        assert_eq!(s3.number("slim").unwrap(), None);
        let backend = t
            .rows()
            .find(|r| r.get("pxname") == Some("app") && r.get("svname") == Some("BACKEND"))
            .unwrap();
        assert_eq!(backend.get("algo"), Some("roundrobin"));
        assert_eq!(backend.number("lbtot").unwrap(), Some(30));
        // Past the `-` marker columns still resolve by name.
        assert!(t.has_column("h1_total_streams"));
        assert!(!t.has_column("-"));
    }

    #[test]
    fn columns_in_another_order_give_the_same_reading() {
        let text = "# type,svname,lbtot,pxname\n2,s1,7,app\n";
        let t = parse_stat(text).unwrap();
        let row = t.rows().next().unwrap();
        assert_eq!(row.name(), "app/s1");
        assert_eq!(row.number("lbtot").unwrap(), Some(7));
        assert_eq!(row.row_type().unwrap(), RowType::Server);
    }

    #[test]
    fn quoted_fields_keep_their_commas_and_quotes() {
        let text = "# pxname,svname,type,check_desc,lbtot\napp,s1,2,\"a, \"\"b\"\"\",5\n";
        let t = parse_stat(text).unwrap();
        let row = t.rows().next().unwrap();
        assert_eq!(row.get("check_desc"), Some("a, \"b\""));
        assert_eq!(row.number("lbtot").unwrap(), Some(5));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "\n\n",
            "pxname,svname,type\napp,s1,2\n",
            "# svname,type\n",
            "# pxname,svname,type\napp,\"s1,2\n",
            "# pxname,svname,type\napp,s1,2\n# pxname,svname,type\n",
        ] {
            assert!(parse_stat(bad).is_err(), "{bad:?}");
        }
        let t = parse_stat("# pxname,svname,type,lbtot\napp,s1,9,x\n").unwrap();
        let row = t.rows().next().unwrap();
        let e = row.row_type().unwrap_err();
        assert!(e.what.contains("type `9`"), "{e}");
        let e = row.number("lbtot").unwrap_err();
        assert!(e.what.contains("`lbtot`") && e.line == 2, "{e}");
        // A short row reads its missing fields as empty.
        let t = parse_stat("# pxname,svname,type,lbtot\napp,s1\n").unwrap();
        assert_eq!(t.rows().next().unwrap().number("lbtot").unwrap(), None);
        // Arbitrary bytes never panic.
        for s in [
            "#",
            "# ,,,",
            "#\u{0}\n\u{0}",
            "# pxname,svname,type\n\"\"\"\n",
        ] {
            let _ = parse_stat(s);
        }
    }
}
