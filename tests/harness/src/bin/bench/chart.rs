//! The timeline chart of an outage scenario, as a plain SVG: one panel per variant, answers per
//! second by outcome (stacked, by the time the request was sent), the failing periods shaded, and
//! under each panel a strip with the protection's state as the answers show it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::outage::{classify, is_trip_answer, Outcome, Run, BUCKET};
use crate::settings::Settings;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 64.0;
const STRIP: f64 = 6.0;
const GAP: f64 = 14.0;
const TOP: f64 = 58.0;

fn color(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "#4c9a2a",
        Outcome::Fallback => "#7fb3d5",
        Outcome::Failed => "#c0392b",
        Outcome::Rejected => "#f0b429",
        Outcome::Other => "#555555",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart of one scenario's round, `runs` holding one run per variant.
pub fn timeline(s: &Settings, title: &str, runs: &[Run]) -> String {
    let Some(first) = runs.first() else {
        return String::new();
    };
    let total = s.outage_pre + first.scenario.failing_time(s) + s.outage_post;
    let buckets = (total.as_secs_f64() / BUCKET.as_secs_f64()).ceil() as usize;
    let per_second = 1.0 / BUCKET.as_secs_f64();
    // counts[run][bucket][outcome]
    let counts: Vec<Vec<[u32; 5]>> = runs
        .iter()
        .map(|r| {
            let mut c = vec![[0u32; 5]; buckets];
            for x in &r.samples {
                let b = (x.sent().as_secs_f64() / BUCKET.as_secs_f64()) as usize;
                if let Some(slot) = c.get_mut(b) {
                    slot[classify(x) as usize] += 1;
                }
            }
            c
        })
        .collect();
    let trips: Vec<Vec<(u32, u32)>> = runs
        .iter()
        .map(|r| {
            let mut c = vec![(0u32, 0u32); buckets];
            for x in &r.samples {
                let b = (x.sent().as_secs_f64() / BUCKET.as_secs_f64()) as usize;
                if let Some(slot) = c.get_mut(b) {
                    if is_trip_answer(x) {
                        slot.0 += 1;
                    } else {
                        slot.1 += 1;
                    }
                }
            }
            c
        })
        .collect();
    let ymax = counts
        .iter()
        .flatten()
        .map(|b| b.iter().sum::<u32>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x_of = |t: f64| LEFT + plot_w * t / total.as_secs_f64();
    let height = TOP + runs.len() as f64 * (PANEL + STRIP + GAP) + 30.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Legend.
    let mut lx = LEFT;
    for oc in Outcome::SHOWN {
        let _ = writeln!(
            o,
            r#"<rect x="{lx}" y="26" width="10" height="10" fill="{}"/><text x="{}" y="35">{}</text>"#,
            color(oc),
            lx + 14.0,
            oc.label()
        );
        lx += 14.0 + 7.0 * oc.label().len() as f64 + 16.0;
    }
    let _ = writeln!(
        o,
        r##"<rect x="{lx}" y="26" width="10" height="10" fill="#fde2e2"/><text x="{}" y="35">dependency failing</text>"##,
        lx + 14.0
    );
    let _ = writeln!(
        o,
        r##"<text x="{LEFT}" y="50" fill="#444">answers/s by when the request was sent ({} ms buckets, y up to {:.0}/s); strip: protection closed (grey), refusing some (orange), refusing all (red)</text>"##,
        BUCKET.as_millis(),
        ymax * per_second
    );
    for (k, r) in runs.iter().enumerate() {
        let top = TOP + k as f64 * (PANEL + STRIP + GAP);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            top + PANEL / 2.0 + 4.0,
            esc(r.variant.name())
        );
        for (a, b) in r.scenario.failing_spans(s) {
            let _ = writeln!(
                o,
                r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{PANEL}" fill="#fde2e2"/>"##,
                x_of(a.as_secs_f64()),
                x_of(b.as_secs_f64()) - x_of(a.as_secs_f64())
            );
        }
        let bw = plot_w / buckets as f64;
        for (b, c) in counts[k].iter().enumerate() {
            let mut y = top + PANEL;
            for oc in Outcome::SHOWN {
                let n = c[oc as usize];
                if n == 0 {
                    continue;
                }
                let h = PANEL * f64::from(n) / ymax;
                y -= h;
                let _ = writeln!(
                    o,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"/>"#,
                    LEFT + b as f64 * bw,
                    (bw - 0.5).max(0.5),
                    color(oc)
                );
            }
            let (tripped, passed) = trips[k][b];
            let fill = match (tripped, passed) {
                (0, _) => "#dddddd",
                (_, 0) => "#c0392b",
                _ => "#f0b429",
            };
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{STRIP}" fill="{fill}"/>"#,
                LEFT + b as f64 * bw,
                top + PANEL + 1.0,
                bw
            );
        }
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999"/>"##,
            top + PANEL,
            LEFT + plot_w,
            top + PANEL
        );
    }
    // Time axis.
    let axis_y = TOP + runs.len() as f64 * (PANEL + STRIP + GAP);
    let secs = total.as_secs_f64().ceil() as u64;
    let step = if secs > 20 { 5 } else { 1 };
    for t in (0..=secs).step_by(step) {
        let x = x_of(t as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{t} s</text>"##,
            axis_y - 4.0,
            axis_y,
            axis_y + 12.0
        );
    }
    o.push_str("</svg>\n");
    o
}

/// Seconds with one decimal, for the chart title.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
