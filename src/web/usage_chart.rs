//! The Usage page's chart: spend per UTC day, stacked by key, as server-rendered SVG (no
//! JavaScript). Drawn twice, for wide and for narrow screens (CSS shows one), so its text
//! stays readable on a phone instead of shrinking with a wide drawing. The value axis has
//! round steps (1, 2, 2.5 or 5 times a power of ten), and each key has a colour and a
//! texture, so that keys can be told apart without relying on colour alone.

use std::collections::HashMap;

use crate::domain::{time_util, Credits};
use crate::store::usage::DailySpend;

/// One drawing of the chart.
pub struct Drawing {
    /// `wide` or `narrow`: which screens show it (CSS).
    pub class: &'static str,
    pub width: i64,
    pub height: i64,
    pub bars: Vec<Bar>,
    pub y_labels: Vec<AxisLabel>,
    pub x_labels: Vec<AxisLabel>,
}

pub struct Chart {
    /// The wide drawing, then the narrow one.
    pub drawings: [Drawing; 2],
    pub series: Vec<Series>,
    pub title: String,
    pub empty: bool,
}

pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    /// Index into [`Chart::series`]: the fill is the series' pattern.
    pub series: usize,
    pub label: String,
}

pub struct AxisLabel {
    pub x: i64,
    pub y: i64,
    pub text: String,
}

/// A key in the legend, with the fill its bars share.
pub struct Series {
    pub id: usize,
    pub name: String,
    pub color: &'static str,
    pub texture: Texture,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Texture {
    Solid,
    Stripes,
    Dots,
    Grid,
}

/// Colours with at least 4.5:1 contrast on white, in an order that puts far-apart hues next
/// to each other; textures cycle at a different period, so neighbours differ in both.
const PALETTE: [&str; 6] = [
    "#4338ca", "#c2410c", "#0f766e", "#be185d", "#4d7c0f", "#7e22ce",
];
const TEXTURES: [Texture; 4] = [
    Texture::Solid,
    Texture::Stripes,
    Texture::Dots,
    Texture::Grid,
];

/// Pixel layout of one drawing.
struct Frame {
    class: &'static str,
    width: i64,
    height: i64,
    left: i64,
    bottom: i64,
    top: i64,
    /// Most day labels on the time axis.
    day_labels: i64,
}

const WIDE: Frame = Frame {
    class: "wide",
    width: 720,
    height: 240,
    left: 64,
    bottom: 28,
    top: 12,
    day_labels: 7,
};
/// Drawn a little narrower than a phone shows it (about 320 px at 390), so its 11-unit text
/// is drawn at 11 px or more.
const NARROW: Frame = Frame {
    class: "narrow",
    width: 300,
    height: 190,
    left: 56,
    bottom: 28,
    top: 12,
    day_labels: 4,
};

pub fn build_chart(rows: &[DailySpend], first_day: i64, days: i64) -> Chart {
    let rows: Vec<&DailySpend> = rows
        .iter()
        .filter(|r| r.day >= first_day && r.day < first_day + days)
        .collect();
    let mut names: Vec<&str> = Vec::new();
    let mut per_day: HashMap<i64, i64> = HashMap::new();
    for r in &rows {
        if !names.contains(&r.key_name.as_str()) {
            names.push(&r.key_name);
        }
        *per_day.entry(r.day).or_default() += r.cost.micros();
    }
    // The keys summed together ("Other keys") come last.
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        let other = names.remove(i);
        names.push(other);
    }
    let (step, steps) = nice_scale(per_day.values().copied().max().unwrap_or(0));
    let draw = |f: &Frame| draw(f, &rows, &names, first_day, days, step, steps);
    Chart {
        drawings: [draw(&WIDE), draw(&NARROW)],
        empty: rows.is_empty(),
        series: names
            .iter()
            .enumerate()
            .map(|(i, n)| Series {
                id: i,
                // The store sums the keys beyond the chart's few (or all of them, when the
                // filter is by something other than a key) under the name "".
                name: match (*n, names.len()) {
                    ("", 1) => "All keys".to_owned(),
                    ("", _) => "Other keys".to_owned(),
                    (n, _) => n.to_owned(),
                },
                color: PALETTE[i % PALETTE.len()],
                texture: TEXTURES[i % TEXTURES.len()],
            })
            .collect(),
        title: format!(
            "Spend per day (credits), {} to {}, UTC",
            time_util::format_date(first_day * 86_400_000),
            time_util::format_date((first_day + days - 1) * 86_400_000)
        ),
    }
}

/// A round step (in micro-credits) and how many of them reach `max`: at most five steps of
/// 1, 2, 2.5 or 5 times a power of ten.
pub fn nice_scale(max: i64) -> (i64, i64) {
    let max = max.max(1);
    // Powers of ten up to 10^18, the largest an i64 holds: the loop always ends.
    for magnitude in (0..=18).map(|e| 10i64.pow(e)) {
        for m in [10, 20, 25, 50] {
            let step = magnitude.saturating_mul(m) / 10;
            if step > 0 && step.saturating_mul(5) >= max {
                return (step, ceil_div(max, step));
            }
        }
    }
    // Beyond 5 * 10^18 (never a day's spend): five plain steps.
    let step = ceil_div(max, 5);
    (step, ceil_div(max, step))
}

/// `a / b` rounded up, for `a >= 1`, `b >= 1` (no overflow, unlike `a + b - 1`).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a - 1) / b + 1
}

fn draw(
    f: &Frame,
    rows: &[&DailySpend],
    names: &[&str],
    first_day: i64,
    days: i64,
    step: i64,
    steps: i64,
) -> Drawing {
    let plot_w = f.width - f.left - 8;
    let plot_h = f.height - f.bottom - f.top;
    let top_value = step * steps;
    let scale = |v: i64| ((v as i128 * plot_h as i128) / top_value as i128) as i64;
    let slot = (plot_w / days.max(1)).max(1);
    let bar_w = (slot * 3 / 4).max(1);
    let mut stacked: HashMap<i64, i64> = HashMap::new();
    let bars = rows
        .iter()
        .map(|r| {
            let base = stacked.entry(r.day).or_default();
            let (y0, bh) = (f.top + plot_h - scale(*base), scale(r.cost.micros()).max(1));
            *base += r.cost.micros();
            Bar {
                x: f.left + (r.day - first_day) * slot + (slot - bar_w) / 2,
                y: y0 - bh,
                w: bar_w,
                h: bh,
                series: names.iter().position(|n| *n == r.key_name).unwrap_or(0),
                label: format!(
                    "{}: {} credits, {}",
                    time_util::format_date(r.day * 86_400_000),
                    r.cost.display(),
                    r.key_name
                ),
            }
        })
        .collect();
    let y_labels = (0..=steps)
        .map(|i| AxisLabel {
            x: f.left - 6,
            y: f.top + plot_h - scale(step * i) + 4,
            text: Credits::from_micros(step * i).display(),
        })
        .collect();
    let every = (days + f.day_labels - 1) / f.day_labels;
    let x_labels = (0..days)
        .step_by(every.max(1) as usize)
        .map(|d| AxisLabel {
            x: f.left + d * slot + slot / 2,
            y: f.height - 8,
            text: time_util::format_date((first_day + d) * 86_400_000)[5..].to_owned(),
        })
        .collect();
    Drawing {
        class: f.class,
        width: f.width,
        height: f.height,
        bars,
        y_labels,
        x_labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_axis_steps_are_round() {
        // 0.112 credits: steps of 0.025 up to 0.125, not 0.028, 0.056, 0.084.
        assert_eq!(nice_scale(112_000), (25_000, 5));
        assert_eq!(nice_scale(1_000_000), (200_000, 5));
        assert_eq!(nice_scale(1_000_001), (250_000, 5));
        assert_eq!(nice_scale(0), (1, 1));
        assert_eq!(nice_scale(3), (1, 3));
        let (step, steps) = nice_scale(i64::MAX);
        assert!(steps <= 5 && step as i128 * steps as i128 >= i64::MAX as i128);
        for max in [1, 7, 99, 12_345, 9_999_999, 123_456_789_012] {
            let (step, steps) = nice_scale(max);
            assert!(step * steps >= max && steps <= 5, "{max}: {step} x {steps}");
            let lead = step / 10i64.pow(step.ilog10());
            assert!(
                [1, 2, 5].contains(&lead) || step.to_string().starts_with("25"),
                "{step}"
            );
        }
    }
}
