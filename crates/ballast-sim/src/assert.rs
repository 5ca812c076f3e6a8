//! `--assert 'peak_ratio<1.5,rejected==0'`: conditions on a report's metrics, for CI. One
//! grammar for every report that has named metrics ([`Metrics`]): `simulate`'s and
//! `loadtest`'s. A value may carry a unit: `20ms`, `1.5s`, `250us` (read as milliseconds) or
//! `0.1%` (read as a fraction).

use crate::report::Report;

/// A report whose figures can be named in conditions.
pub trait Metrics {
    /// Every metric a condition may name.
    fn names(&self) -> &'static [&'static str];
    /// The value of one, when the report has it.
    fn metric(&self, name: &str) -> Option<f64>;
}

impl Metrics for Report {
    fn names(&self) -> &'static [&'static str] {
        Report::METRICS
    }
    fn metric(&self, name: &str) -> Option<f64> {
        Report::metric(self, name)
    }
}

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

/// Parses a comma-separated list of conditions on `simulate`'s report.
pub fn parse(spec: &str) -> Result<Vec<Condition>, String> {
    parse_for(spec, Report::METRICS)
}

/// Parses a comma-separated list of conditions on the metrics `known`.
pub fn parse_for(spec: &str, known: &[&str]) -> Result<Vec<Condition>, String> {
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    if parts.iter().all(|p| p.is_empty()) {
        return Err("no condition given; write them like p99<20ms,errors==0".into());
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "`{spec}` has an empty condition between commas; write them like p99<20ms,errors==0"
        ));
    }
    parts
        .into_iter()
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
            if !known.contains(&metric.as_str()) {
                return Err(format!(
                    "unknown metric `{metric}`; known: {}",
                    known.join(", ")
                ));
            }
            let value = value(value_text).ok_or_else(|| {
                format!(
                    "`{value_text}` in `{part}` is not a number (units: ms, s, us for times, % \
                     for fractions)"
                )
            })?;
            if FRACTIONS.contains(&metric.as_str()) && value > 1.0 && !value_text.ends_with('%') {
                return Err(format!(
                    "`{part}`: {metric} is a fraction from 0 to 1; write a percentage such as \
                     {metric}{sym}{value_text}% or a fraction such as {metric}{sym}0.01"
                ));
            }
            Ok(Condition {
                metric,
                op,
                value,
                text: part.to_string(),
            })
        })
        .collect()
}

/// Metrics that are fractions from 0 to 1: a bound above 1 is a percentage written without `%`.
const FRACTIONS: &[&str] = &["errors", "jain", "chi2_p"];

/// A number, with an optional unit: times in milliseconds, percentages as fractions.
fn value(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('%') {
        (n, 0.01)
    } else {
        (text, 1.0)
    };
    let v: f64 = number.trim().parse().ok()?;
    v.is_finite().then_some(v * scale)
}

/// Evaluates conditions against a report.
pub fn evaluate(conditions: &[Condition], report: &impl Metrics) -> Vec<Verdict> {
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
        assert!(parse("").unwrap_err().contains("no condition"));
        assert!(
            parse("peak_ratio<2,,jain>0.9")
                .unwrap_err()
                .contains("empty condition")
        );
        assert!(
            parse("peak_ratio<2,")
                .unwrap_err()
                .contains("empty condition")
        );
    }

    #[test]
    fn a_fraction_bounded_above_one_is_a_percentage_without_its_sign() {
        let known = &["errors", "p99"];
        let e = parse_for("errors<5", known).unwrap_err();
        assert!(e.contains("errors<5%") && e.contains("fraction"), "{e}");
        assert!((parse_for("errors<5%", known).unwrap()[0].value - 0.05).abs() < 1e-12);
        assert_eq!(parse_for("errors<0.5", known).unwrap()[0].value, 0.5);
        assert_eq!(parse_for("p99<5", known).unwrap()[0].value, 5.0);
    }

    #[test]
    fn values_carry_units() {
        let c = parse("queue_wait_p99_ms<20ms,queue_wait_max_ms<1.5s,peak_ratio<150%").unwrap();
        assert_eq!(c[0].value, 20.0);
        assert_eq!(c[1].value, 1500.0);
        assert!((c[2].value - 1.5).abs() < 1e-12);
        assert!(parse("queue_wait_p99_ms<250us").unwrap()[0].value - 0.25 < 1e-12);
        assert!(parse("rejected<inf").is_err());
    }
}
