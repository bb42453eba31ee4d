//! Pictures drawn on the server, so the pages need no chart library: the status badge (as
//! deck's `/badge.svg`) and a job's history chart (each run's duration as a bar coloured by its
//! state, and the pass rate of the last ten finished runs as a line).

use std::fmt::Write as _;

use crate::ProwJobState;

/// What a badge says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every job's latest finished run passed.
    Passing,
    /// Some job's latest finished run did not pass.
    Failing,
    /// No job has a finished run.
    Unknown,
}

impl Verdict {
    /// The verdict over the latest finished run of each job.
    pub fn of(latest: impl IntoIterator<Item = ProwJobState>) -> Self {
        let mut seen = false;
        for state in latest {
            seen = true;
            if state != ProwJobState::Success {
                return Verdict::Failing;
            }
        }
        if seen {
            Verdict::Passing
        } else {
            Verdict::Unknown
        }
    }

    fn words(self) -> (&'static str, &'static str) {
        match self {
            Verdict::Passing => ("passing", "#2e7d32"),
            Verdict::Failing => ("failing", "#c62828"),
            Verdict::Unknown => ("unknown", "#616161"),
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Width of `text` in the badge's 11 px sans-serif, roughly (no font metrics on the server).
fn width(text: &str) -> usize {
    text.chars().count() * 7 + 10
}

/// The badge: `label` on the left, the verdict on the right.
pub fn badge(label: &str, verdict: Verdict) -> String {
    let label: String = label.chars().take(60).collect();
    let (word, colour) = verdict.words();
    let (left, right) = (width(&label), width(word));
    let total = left + right;
    let label = escape(&label);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" aria-label=\"{label}: {word}\">\
<title>{label}: {word}</title>\
<rect width=\"{left}\" height=\"20\" fill=\"#555\"/>\
<rect x=\"{left}\" width=\"{right}\" height=\"20\" fill=\"{colour}\"/>\
<g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\" text-anchor=\"middle\">\
<text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{rx}\" y=\"14\">{word}</text></g></svg>",
        lx = left / 2,
        rx = left + right / 2,
    )
}

/// One run on the history chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// Its name (the bar's title).
    pub name: String,
    /// Seconds it ran.
    pub seconds: i64,
    /// Its state.
    pub state: ProwJobState,
}

/// The CSS class of a state's colour.
pub fn state_class(state: ProwJobState) -> &'static str {
    match state {
        ProwJobState::Success => "success",
        ProwJobState::Failure => "failure",
        ProwJobState::Error => "error",
        ProwJobState::Aborted => "aborted",
        ProwJobState::Pending => "pending",
        ProwJobState::Triggered | ProwJobState::Scheduling => "triggered",
    }
}

/// The pass rate (0-100) of the last `window` finished runs at each run, oldest first.
pub fn pass_rates(points: &[Point], window: usize) -> Vec<Option<u32>> {
    let mut finished: std::collections::VecDeque<bool> = Default::default();
    points
        .iter()
        .map(|p| {
            if p.state.is_complete() {
                if finished.len() == window {
                    finished.pop_front();
                }
                finished.push_back(p.state == ProwJobState::Success);
            }
            (!finished.is_empty()).then(|| {
                let passed = finished.iter().filter(|p| **p).count();
                (passed * 100 / finished.len()) as u32
            })
        })
        .collect()
}

/// The history chart of `points`, oldest first: one bar per run, its height the run's duration
/// against the longest, and the pass rate over the last ten finished runs as a line.
pub fn history(points: &[Point]) -> String {
    const W: usize = 600;
    const H: usize = 120;
    let n = points.len().max(1);
    let slot = W as f64 / n as f64;
    let longest = points.iter().map(|p| p.seconds).max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" class=\"chart\" role=\"img\" \
aria-label=\"Durations and pass rate of the last {} runs\">",
        points.len()
    );
    for (i, p) in points.iter().enumerate() {
        let h = ((p.seconds as f64 / longest) * (H as f64 - 10.0)).max(1.0);
        let _ = write!(
            svg,
            "<rect class=\"bar {}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {}s, {}</title></rect>",
            state_class(p.state),
            i as f64 * slot + slot * 0.1,
            H as f64 - h,
            slot * 0.8,
            escape(&p.name),
            p.seconds,
            state_class(p.state),
        );
    }
    let line: Vec<String> = pass_rates(points, 10)
        .iter()
        .enumerate()
        .filter_map(|(i, rate)| {
            rate.map(|r| {
                format!(
                    "{:.1},{:.1}",
                    i as f64 * slot + slot / 2.0,
                    (H as f64 - 5.0) - f64::from(r) / 100.0 * (H as f64 - 10.0)
                )
            })
        })
        .collect();
    if !line.is_empty() {
        let _ = write!(
            svg,
            "<polyline class=\"rate\" fill=\"none\" points=\"{}\"><title>pass rate of the last 10 finished runs</title></polyline>",
            line.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProwJobState::*;

    #[test]
    fn the_badge_says_failing_when_any_latest_run_failed_and_unknown_with_none() {
        assert_eq!(Verdict::of([Success, Success]), Verdict::Passing);
        assert_eq!(Verdict::of([Success, Error]), Verdict::Failing);
        assert_eq!(Verdict::of([]), Verdict::Unknown);
        let svg = badge("pull-<unit>", Verdict::Failing);
        assert!(svg.contains("failing") && svg.contains("#c62828"), "{svg}");
        assert!(
            svg.contains("pull-&lt;unit&gt;") && !svg.contains("<unit>"),
            "{svg}"
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn pass_rates_follow_the_last_ten_finished_runs_and_skip_running_ones() {
        let p = |state| Point {
            name: "r".into(),
            seconds: 1,
            state,
        };
        let points: Vec<Point> = [Pending, Success, Failure, Pending, Success]
            .into_iter()
            .map(p)
            .collect();
        assert_eq!(
            pass_rates(&points, 10),
            [None, Some(100), Some(50), Some(50), Some(66)]
        );
        let many: Vec<Point> = (0..12)
            .map(|i| p(if i < 2 { Failure } else { Success }))
            .collect();
        assert_eq!(
            pass_rates(&many, 10).last(),
            Some(&Some(100)),
            "the two failures left the window"
        );
    }

    #[test]
    fn the_chart_draws_a_bar_per_run_scaled_to_the_longest_and_a_rate_line() {
        let points = vec![
            Point {
                name: "a".into(),
                seconds: 10,
                state: Success,
            },
            Point {
                name: "b".into(),
                seconds: 20,
                state: Failure,
            },
        ];
        let svg = history(&points);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(
            svg.contains("class=\"bar failure\"") && svg.contains("height=\"110.0\""),
            "{svg}"
        );
        assert!(svg.contains("height=\"55.0\""), "half the longest: {svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(!history(&[]).contains("<polyline"));
    }
}
