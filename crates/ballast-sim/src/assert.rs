//! `--assert 'peak_ratio<1.5,rejected==0'`: conditions on a report's metrics, for CI.

use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// One condition: `metric op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub metric: String,
    pub op: Op,
    pub value: f64,
    pub text: String,
}

/// The verdict on one condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub condition: String,
    pub actual: f64,
    pub passed: bool,
}

/// Parses a comma-separated list of conditions.
pub fn parse(spec: &str) -> Result<Vec<Condition>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|part| {
            let ops = [
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("<", Op::Lt),
                (">", Op::Gt),
            ];
            let (at, sym, op) = ops
                .iter()
                .filter_map(|(sym, op)| part.find(sym).map(|at| (at, *sym, *op)))
                .min_by_key(|(at, sym, _)| (*at, std::cmp::Reverse(sym.len())))
                .ok_or_else(|| {
                    format!("`{part}` has no comparison; write it like peak_ratio<1.5")
                })?;
            let metric = part[..at].trim().to_string();
            let value_text = part[at + sym.len()..].trim();
            if !Report::METRICS.contains(&metric.as_str()) {
                return Err(format!(
                    "unknown metric `{metric}`; known: {}",
                    Report::METRICS.join(", ")
                ));
            }
            let value: f64 = value_text
                .parse()
                .map_err(|_| format!("`{value_text}` in `{part}` is not a number"))?;
            Ok(Condition {
                metric,
                op,
                value,
                text: part.to_string(),
            })
        })
        .collect()
}

/// Evaluates conditions against a report.
pub fn evaluate(conditions: &[Condition], report: &Report) -> Vec<Verdict> {
    conditions
        .iter()
        .map(|c| {
            let actual = report.metric(&c.metric).unwrap_or(f64::NAN);
            let passed = match c.op {
                Op::Lt => actual < c.value,
                Op::Le => actual <= c.value,
                Op::Gt => actual > c.value,
                Op::Ge => actual >= c.value,
                Op::Eq => actual == c.value,
                Op::Ne => actual != c.value,
            };
            Verdict {
                condition: c.text.clone(),
                actual,
                passed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions_and_refuses_nonsense() {
        let c = parse("peak_ratio<1.5, rejected==0,jain>=0.9").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].op, Op::Lt);
        assert_eq!(c[1].op, Op::Eq);
        assert_eq!(c[2].op, Op::Ge);
        assert_eq!(c[2].value, 0.9);
        assert!(parse("peak_ratio").unwrap_err().contains("no comparison"));
        assert!(parse("speed<3").unwrap_err().contains("unknown metric"));
        assert!(parse("rejected<=x").unwrap_err().contains("not a number"));
    }
}
