//! The review as one self-contained HTML page: the same sections as the Markdown, inline CSS,
//! and inline SVG line charts of each server's share against its expected share and of 5xx
//! over time. No external asset, no script: it opens from a file on a machine with no network.

use std::fmt::Write;

use super::markdown::{Block, sections, title};
use super::model::{Point, Review};
use crate::change::clock;

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:2rem auto;\
padding:0 1rem;color:#1d2330}h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ccd}\
code,pre{font-family:ui-monospace,monospace;font-size:.9em;background:#f3f4f7}pre{padding:.6rem;\
overflow-x:auto}table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccd;\
padding:.2rem .5rem;text-align:right}td:first-child,th:first-child{text-align:left}\
em.team{color:#9a3412;font-style:italic}figure{margin:1rem 0}figcaption{font-size:.85em;\
color:#555}svg text{font:11px system-ui,sans-serif}";

/// Series colours, one per server, cycled.
const COLOURS: &[&str] = &[
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d",
];

pub fn render(r: &Review) -> String {
    let mut out = String::new();
    let title = title(r);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    for section in sections(r) {
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            section.id,
            escape(section.title)
        );
        for block in &section.blocks {
            match block {
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "<p>{}</p>", inline(text));
                }
                Block::List(items) => {
                    out.push_str("<ul>\n");
                    for item in items {
                        let _ = writeln!(out, "<li>{}</li>", inline(item));
                    }
                    out.push_str("</ul>\n");
                }
                Block::Table { head, rows } => {
                    out.push_str("<table>\n<tr>");
                    for h in head {
                        let _ = write!(out, "<th>{}</th>", escape(h));
                    }
                    out.push_str("</tr>\n");
                    for row in rows {
                        out.push_str("<tr>");
                        for cell in row {
                            let _ = write!(out, "<td>{}</td>", escape(cell));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</table>\n");
                }
                Block::Code(lines) => {
                    let _ = writeln!(out, "<pre>{}</pre>", escape(&lines.join("\n")));
                }
                Block::Chart(which) => out.push_str(&chart(r, which)),
            }
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes, then `code` spans, **bold** and the team's mark.
fn inline(text: &str) -> String {
    let escaped = escape(text).replace(
        super::TO_BE_WRITTEN,
        "<em class=\"team\">To be written by the team.</em>",
    );
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            let mut bold = false;
            for (j, piece) in part.split("**").enumerate() {
                if j > 0 {
                    out.push_str(if bold { "</strong>" } else { "<strong>" });
                    bold = !bold;
                }
                out.push_str(piece);
            }
            if bold {
                out.push_str("</strong>");
            }
        }
    }
    out
}

/// One line of a chart: its name, colour, dashed or not, and its (time, value) points.
struct Line {
    name: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<(u64, f64)>,
}

fn chart(r: &Review, which: &str) -> String {
    let servers: Vec<String> = r
        .series
        .first()
        .map(|p| p.servers.iter().map(|s| s.server.clone()).collect())
        .unwrap_or_default();
    let value =
        |p: &Point, server: &str, f: &dyn Fn(&ballast_core::event::ServerSnapshot) -> f64| {
            p.servers.iter().find(|s| s.server == server).map(f)
        };
    let mut lines = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let series = |f: &dyn Fn(&ballast_core::event::ServerSnapshot) -> f64| -> Vec<(u64, f64)> {
            r.series
                .iter()
                .filter_map(|p| value(p, server, f).map(|v| (p.at_ms, v)))
                .collect()
        };
        if which == "shares" {
            lines.push(Line {
                name: format!("{server} share"),
                colour,
                dashed: false,
                points: series(&|s| s.share * 100.0),
            });
            lines.push(Line {
                name: format!("{server} expected"),
                colour,
                dashed: true,
                points: series(&|s| s.expected_share * 100.0),
            });
        } else {
            lines.push(Line {
                name: format!("{server} 5xx"),
                colour,
                dashed: false,
                points: series(&|s| s.errors_5xx as f64),
            });
        }
    }
    let (caption, unit) = if which == "shares" {
        (
            "Each server's share of the pool's requests (solid) against its expected share \
             (dashed), per snapshot",
            "%",
        )
    } else {
        ("5xx responses per server, per snapshot", "")
    };
    let marks: Vec<(u64, &str)> = [
        Some((r.onset.at_ms, "onset")),
        Some((r.incident.first_alert_ms, "alert")),
        r.incident.restored_ms.map(|t| (t, "restored")),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!(
        "<figure class=\"chart\" id=\"chart-{which}\">\n{}<figcaption>{}</figcaption>\n</figure>\n",
        svg(&lines, unit, &marks),
        escape(caption)
    )
}

fn svg(lines: &[Line], unit: &str, marks: &[(u64, &str)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 260.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 150.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 28.0;
    let times = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .chain(marks.iter().map(|m| m.0));
    let (t0, t1) = times.fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let mut out = format!(
        "<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" \
         height=\"{H}\" role=\"img\">\n"
    );
    if t0 > t1 {
        out.push_str("<text x=\"10\" y=\"20\">no data</text>\n</svg>\n");
        return out;
    }
    let span = (t1 - t0).max(1) as f64;
    let top_value = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top_value = if top_value <= 0.0 {
        1.0
    } else {
        nice(top_value)
    };
    let x = |t: u64| LEFT + (t - t0) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top_value) * (H - TOP - BOTTOM);
    // Axes, gridlines at quarters, time labels at both ends.
    for q in 0..=4 {
        let v = top_value * q as f64 / 4.0;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e2e4ea\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}{unit}</text>",
            W - RIGHT,
            y(v),
            y(v),
            LEFT - 4.0,
            y(v) + 4.0,
            trim(v)
        );
    }
    for (t, anchor) in [(t0, "start"), (t1, "end")] {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(t),
            H - 8.0,
            clock(t)
        );
    }
    for (t, label) in marks {
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\" stroke=\"#888\" \
             stroke-dasharray=\"2 3\"/><text x=\"{2:.1}\" y=\"{3:.1}\" fill=\"#555\">{label}</text>",
            x(*t),
            H - BOTTOM,
            x(*t) + 3.0,
            TOP + 10.0
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let dash = if line.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} points=\"{}\">\
             <title>{}</title></polyline>",
            line.colour,
            points.join(" "),
            escape(&line.name)
        );
        let ly = TOP + 14.0 * i as f64 + 6.0;
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" \
             stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - RIGHT + 8.0,
            W - RIGHT + 28.0,
            line.colour,
            W - RIGHT + 32.0,
            ly + 4.0,
            escape(&line.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A round top for an axis: 1, 2 or 5 times a power of ten, at or above `v`.
fn nice(v: f64) -> f64 {
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&n| n >= v)
        .unwrap_or(10.0 * power)
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_marks_become_elements_and_text_is_escaped() {
        assert_eq!(
            inline("a `<b>` **c** _To be written by the team._"),
            "a <code>&lt;b&gt;</code> <strong>c</strong> <em class=\"team\">To be written by \
             the team.</em>"
        );
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice(37.0), 50.0);
        assert_eq!(nice(100.0), 100.0);
        assert_eq!(nice(0.3), 0.5);
    }
}
