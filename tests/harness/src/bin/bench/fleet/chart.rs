//! The fleet timeline as a plain SVG, in the outage charts' style: one panel per protection, the
//! users' answers per second by kind (stacked, by when the request was sent), the slow and failing
//! periods shaded, the requests reaching the service per second (black line) and the users' p99
//! latency per bucket (blue line, log scale).

use std::fmt::Write as _;

use super::run::{classify, Answer, FleetRun, Measured, Outcome};
use super::{Timeline, BUCKET};
use crate::stats::{nanos, percentile};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 210.0;
const RIGHT: f64 = 60.0;
const PANEL: f64 = 90.0;
const GAP: f64 = 16.0;
const TOP: f64 = 76.0;
/// Arrivals at the service the y scale makes room for, in multiples of the offered load: Istio's
/// default policy makes up to 3 attempts of every request. A burst beyond that is clipped (its peak
/// is written next to it), so that the answers stay readable.
const ARRIVALS_HEADROOM: f64 = 3.0;
/// The latency axis: 1 ms at the bottom of a panel, 10^LOG_DECADES ms at the top.
const LOG_DECADES: f64 = 4.0;

const SLOW_FILL: &str = "#fdf0d5";
const FAIL_FILL: &str = "#fde2e2";
const ARRIVALS: &str = "#222222";
const LATENCY: &str = "#1f5fbf";

fn color(a: Answer) -> &'static str {
    match a {
        Answer::Ok => "#4c9a2a",
        Answer::Failed => "#c0392b",
        Answer::Refused => "#f0b429",
        Answer::Other => "#555555",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One protection's panel, per bucket.
struct Panel<'a> {
    /// Answers by kind ([`Answer`] as index).
    counts: Vec<[u32; 4]>,
    /// The users' p99 latency in ms.
    p99: Vec<Option<f64>>,
    /// Requests reaching the service.
    arrivals: &'a [u32],
}

/// The panel of a measured run over `n` buckets.
fn panel(m: &Measured, n: usize) -> Panel<'_> {
    let mut counts = vec![[0u32; 4]; n];
    let mut lat: Vec<Vec<u64>> = vec![Vec::new(); n];
    for x in &m.samples {
        let b = (x.sent().as_secs_f64() / BUCKET.as_secs_f64()) as usize;
        if let (Some(c), Some(l)) = (counts.get_mut(b), lat.get_mut(b)) {
            c[classify(x) as usize] += 1;
            l.push(nanos(x.latency));
        }
    }
    let p99 = lat
        .into_iter()
        .map(|mut l| {
            l.sort_unstable();
            (!l.is_empty()).then(|| percentile(&l, 99.0).as_secs_f64() * 1e3)
        })
        .collect();
    Panel {
        counts,
        p99,
        arrivals: &m.arrivals,
    }
}

pub fn timeline(t: &Timeline, runs: &[FleetRun]) -> String {
    let total = t.total().as_secs_f64();
    let n = (total / BUCKET.as_secs_f64()).ceil() as usize;
    let per_second = 1.0 / BUCKET.as_secs_f64();
    let data: Vec<Option<Panel>> = runs
        .iter()
        .map(|r| match &r.result {
            Outcome::Measured(m) => Some(panel(m, n)),
            _ => None,
        })
        .collect();
    // One scale for every panel, so they compare at a glance.
    let answers_max = data
        .iter()
        .flatten()
        .flat_map(|p| p.counts.iter().map(|b| b.iter().sum::<u32>()))
        .max()
        .unwrap_or(1)
        .max(1);
    let arrivals_max = data
        .iter()
        .flatten()
        .flat_map(|p| p.arrivals.iter().copied())
        .max()
        .unwrap_or(0);
    let offered = t.rate * BUCKET.as_secs_f64();
    let ymax = f64::from(answers_max).max(f64::from(arrivals_max).min(ARRIVALS_HEADROOM * offered));
    let plot_w = WIDTH - LEFT - RIGHT;
    let x_of = |secs: f64| LEFT + plot_w * secs / total;
    let bw = plot_w / n.max(1) as f64;
    let height = TOP + runs.len() as f64 * (PANEL + GAP) + 30.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        esc(&format!(
            "8 callers → dependency sidecar → service: healthy {:.0} s, 10× slower {:.0} s, failing {:.0} s, healthy {:.0} s",
            t.pre.as_secs_f64(),
            t.slow.as_secs_f64(),
            t.fail.as_secs_f64(),
            t.post.as_secs_f64()
        ))
    );
    let mut lx = LEFT;
    for a in Answer::SHOWN {
        let _ = writeln!(
            o,
            r#"<rect x="{lx}" y="26" width="10" height="10" fill="{}"/><text x="{}" y="35">{}</text>"#,
            color(a),
            lx + 14.0,
            a.label()
        );
        lx += 14.0 + 6.5 * a.label().len() as f64 + 14.0;
    }
    for (fill, label) in [(SLOW_FILL, "slow"), (FAIL_FILL, "failing")] {
        let _ = writeln!(
            o,
            r#"<rect x="{lx}" y="26" width="10" height="10" fill="{fill}"/><text x="{}" y="35">{label}</text>"#,
            lx + 14.0
        );
        lx += 14.0 + 6.5 * label.len() as f64 + 14.0;
    }
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="52" fill="{ARRIVALS}">bars: the users' answers/s by when the request was sent ({} ms buckets, y up to {:.0}/s); black line: requests/s reaching the service</text>"#,
        BUCKET.as_millis(),
        ymax * per_second
    );
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="66" fill="{LATENCY}">blue line: the users' p99 latency per bucket (right axis, 1 ms to 10 s, log scale)</text>"#
    );
    for (k, (r, d)) in runs.iter().zip(&data).enumerate() {
        let top = TOP + k as f64 * (PANEL + GAP);
        let bottom = top + PANEL;
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            top + PANEL / 2.0 + 4.0,
            esc(r.protection.name())
        );
        let Some(Panel {
            counts,
            p99,
            arrivals,
        }) = d
        else {
            let why = match &r.result {
                Outcome::Unavailable(_) => "not available in this build",
                _ => "run failed",
            };
            let _ = writeln!(
                o,
                r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="#f4f4f4"/><text x="{}" y="{}" text-anchor="middle" fill="#777">{why}</text>"##,
                LEFT + plot_w / 2.0,
                top + PANEL / 2.0 + 4.0
            );
            continue;
        };
        for (from, to, fill) in [
            (t.pre, t.pre + t.slow, SLOW_FILL),
            (t.pre + t.slow, t.healed(), FAIL_FILL),
        ] {
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{PANEL}" fill="{fill}"/>"#,
                x_of(from.as_secs_f64()),
                x_of(to.as_secs_f64()) - x_of(from.as_secs_f64())
            );
        }
        for (b, c) in counts.iter().enumerate() {
            let mut y = bottom;
            for a in [Answer::Ok, Answer::Failed, Answer::Refused, Answer::Other] {
                let v = c[a as usize];
                if v == 0 {
                    continue;
                }
                let h = PANEL * f64::from(v) / ymax;
                y -= h;
                let _ = writeln!(
                    o,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"/>"#,
                    LEFT + b as f64 * bw,
                    (bw - 0.5).max(0.5),
                    color(a)
                );
            }
        }
        let line = |points: Vec<(f64, f64)>, stroke: &str| -> String {
            let pts: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            format!(
                r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="1.5"/>"#,
                pts.join(" ")
            )
        };
        let mid = |b: usize| LEFT + (b as f64 + 0.5) * bw;
        let arrivals_line: Vec<(f64, f64)> = (0..n)
            .map(|b| {
                let v = f64::from(arrivals.get(b).copied().unwrap_or(0));
                (mid(b), bottom - PANEL * (v / ymax).min(1.0))
            })
            .collect();
        let _ = writeln!(o, "{}", line(arrivals_line, ARRIVALS));
        if let Some((b, peak)) = arrivals
            .iter()
            .copied()
            .enumerate()
            .max_by_key(|(_, v)| *v)
            .filter(|(_, v)| f64::from(*v) > ymax)
        {
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" fill="{ARRIVALS}" font-size="9">{:.0}/s</text>"#,
                mid(b) + 3.0,
                top + 9.0,
                f64::from(peak) * per_second
            );
        }
        let latency_line: Vec<(f64, f64)> = p99
            .iter()
            .enumerate()
            .filter_map(|(b, p)| {
                let ms = (*p)?;
                let f = (ms.max(1.0).log10() / LOG_DECADES).min(1.0);
                Some((mid(b), bottom - PANEL * f))
            })
            .collect();
        let _ = writeln!(o, "{}", line(latency_line, LATENCY));
        for (label, f) in [("1 ms", 0.0), ("100 ms", 0.5), ("10 s", 1.0)] {
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" fill="{LATENCY}" font-size="9">{label}</text>"#,
                LEFT + plot_w + 4.0,
                bottom - PANEL * f + 3.0
            );
        }
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{bottom:.1}" x2="{:.1}" y2="{bottom:.1}" stroke="#999"/>"##,
            LEFT + plot_w
        );
    }
    let axis_y = TOP + runs.len() as f64 * (PANEL + GAP);
    let secs = total.ceil() as u64;
    let step = if secs > 20 { 5 } else { 1 };
    for s in (0..=secs).step_by(step) {
        let x = x_of(s as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{s} s</text>"##,
            axis_y - 4.0,
            axis_y,
            axis_y + 12.0
        );
    }
    o.push_str("</svg>\n");
    o
}
