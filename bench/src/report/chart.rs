//! The report as an SVG chart drawn with plotters: one small bar chart per
//! figure, a bar per server at its median with a whisker from the lowest to
//! the highest round, and a red line at the figure's target if it has one;
//! then, when the curve ran, its round trips and CPU per round trip against
//! the number of connections, a line per server, both axes logarithmic.
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::curve::{CurveReport, Point};
use super::{FigureReport, Report};
use crate::figures::{Better, Figure};
use crate::servers::{ServerKind, Suite};
use crate::stats::{short, short_ratio};

const COLUMNS: usize = 2;
const PANEL: (u32, u32) = (560, 300);
const TITLE_HEIGHT: u32 = 50;

fn colour(server: ServerKind) -> RGBColor {
    match server {
        ServerKind::EvconnShared => RGBColor(0x1f, 0x6f, 0xb4),
        ServerKind::EvconnConnection => RGBColor(0x6a, 0xa8, 0xdc),
        ServerKind::Tokio => RGBColor(0xe0, 0x7b, 0x1a),
        ServerKind::Libevent => RGBColor(0x3a, 0x9a, 0x4a),
        ServerKind::GuestSocket => RGBColor(0x8e, 0x44, 0xad),
        // The proxy suite: evconn in the same blues, the natives in their
        // own colours.
        ServerKind::ProxyShared => RGBColor(0x1f, 0x6f, 0xb4),
        ServerKind::ProxyConnection => RGBColor(0x6a, 0xa8, 0xdc),
        ServerKind::Haproxy => RGBColor(0xc0, 0x39, 0x2b),
        ServerKind::Nginx => RGBColor(0x3a, 0x9a, 0x4a),
        ServerKind::TokioProxy => RGBColor(0xe0, 0x7b, 0x1a),
        ServerKind::KvShared => RGBColor(0x1f, 0x6f, 0xb4),
        ServerKind::KvConnection => RGBColor(0x6a, 0xa8, 0xdc),
        ServerKind::RedisServer => RGBColor(0xc0, 0x39, 0x2b),
        ServerKind::TlsShared => RGBColor(0x1f, 0x6f, 0xb4),
        ServerKind::TlsHaproxy => RGBColor(0xc0, 0x39, 0x2b),
        ServerKind::TlsTokio => RGBColor(0xe0, 0x7b, 0x1a),
    }
}

pub fn svg(report: &Report, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let curve_panels = if report.curve.is_some() { 2 } else { 0 };
    let rows = (report.figures.len().div_ceil(COLUMNS) * COLUMNS + curve_panels).div_ceil(COLUMNS);
    let size = (PANEL.0 * COLUMNS as u32, PANEL.1 * rows as u32 + TITLE_HEIGHT);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let servers = match report.plan.suite {
        Suite::Echo => "evconn, native echo servers and a guest owning its socket",
        Suite::Proxy => "evconn's proxy guest, HAProxy, nginx and a tokio proxy",
        Suite::Kv => "evconn's kv guest on the in-memory store and redis-server, under redis-benchmark",
        Suite::Tls => "evconn terminating TLS, HAProxy terminating TLS for a native echo, and tokio-rustls",
    };
    let title = format!("{servers}, {}: median, whisker min-max; (Nx) evconn / best native", report.meta.date);
    let body = root.titled(&title, ("sans-serif", 20)).map_err(|e| err(&e))?;
    let servers: Vec<ServerKind> = report.servers.iter().filter(|s| s.missing.is_none()).map(|s| s.server).collect();
    let areas = body.split_evenly((rows, COLUMNS));
    for (area, figure) in areas.iter().zip(&report.figures) {
        panel(area, figure, &servers).map_err(|e| err(&e))?;
    }
    // The curve starts on a row of its own.
    if let Some(curve) = &report.curve {
        let first = report.figures.len().div_ceil(COLUMNS) * COLUMNS;
        for (area, figure) in areas.iter().skip(first).zip([Figure::RoundTrips, Figure::CpuPerRoundTrip]) {
            curve_panel(area, curve, figure).map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    figure: &FigureReport,
    servers: &[ServerKind],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let better = match figure.better {
        Better::Higher => "higher is better",
        Better::Lower => "lower is better",
    };
    let top = figure.values.iter().map(|v| v.summary.max).chain(figure.target).fold(0.0f64, f64::max);
    // Room above the bars for two lines of labels.
    let top = if top > 0.0 { top * 1.3 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({better})", figure.title), ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(52)
        // An integer range includes its end: n servers are 0..n-1.
        .build_cartesian_2d((0..servers.len().saturating_sub(1)).into_segmented(), 0.0..top)?;
    let labels: Vec<&str> = servers.iter().map(|s| s.label()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(servers.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).copied().unwrap_or_default().to_string(),
            _ => String::new(),
        })
        .y_labels(5)
        .y_label_formatter(&|y| short(*y))
        .y_desc(figure.unit)
        .label_style(("sans-serif", 11))
        .draw()?;

    let present: Vec<(usize, ServerKind, crate::stats::Summary)> =
        servers.iter().enumerate().filter_map(|(i, &s)| figure.value(s).map(|v| (i, s, v.summary))).collect();
    chart.draw_series(present.iter().map(|&(i, s, summary)| {
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), summary.median)],
            colour(s).filled(),
        );
        bar.set_margin(0, 0, 14, 14);
        bar
    }))?;
    chart.draw_series(present.iter().map(|&(i, _, summary)| {
        ErrorBar::new_vertical(
            SegmentValue::CenterOf(i),
            summary.min,
            summary.median,
            summary.max,
            BLACK.stroke_width(1),
            10,
        )
    }))?;
    let above = TextStyle::from(("sans-serif", 11)).pos(Pos::new(HPos::Center, VPos::Bottom));
    // evconn's bars also say how far they are from the best native server.
    let label = |s: ServerKind, median: f64| match figure.best_native.and_then(|b| figure.ratio(s, b)) {
        Some(r) => format!("{} ({:.2}x)", short(median), r.summary.median),
        None => short(median),
    };
    chart.draw_series(present.iter().map(|&(i, s, summary)| {
        Text::new(label(s, summary.median), (SegmentValue::CenterOf(i), summary.max + top * 0.02), above.clone())
    }))?;
    // And how far they are from the guest that owns its socket.
    let against_guest = |s: ServerKind| figure.ratio(s, ServerKind::GuestSocket).map(|r| r.summary.median);
    chart.draw_series(present.iter().filter_map(|&(i, s, summary)| {
        let ratio = against_guest(s)?;
        let text = format!("{}x guest socket", short_ratio(ratio));
        Some(Text::new(text, (SegmentValue::CenterOf(i), summary.max + top * 0.09), above.clone()))
    }))?;
    if let Some(target) = figure.target {
        let red = RGBColor(0xc0, 0x20, 0x20);
        let (left, right) = (SegmentValue::Exact(0), SegmentValue::Exact(servers.len()));
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(left, target), (right, target)],
            red.stroke_width(1),
        )))?;
        let note = TextStyle::from(("sans-serif", 11)).color(&red).pos(Pos::new(HPos::Right, VPos::Bottom));
        let last = SegmentValue::CenterOf(servers.len().saturating_sub(1));
        chart.draw_series(std::iter::once(Text::new(
            format!("target {} {}", short(target), figure.unit),
            (last, target),
            note,
        )))?;
    }
    Ok(())
}

/// One figure of the curve against the number of connections: a line per
/// server through its medians, log-log since the servers differ by orders
/// of magnitude.
fn curve_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    curve: &CurveReport,
    figure: Figure,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let pick = |p: &Point| match figure {
        Figure::RoundTrips => p.round_trips_per_s,
        _ => p.cpu_us_per_round_trip,
    };
    let medians = |points: &[Point]| -> Vec<(f64, f64)> {
        points.iter().filter_map(|p| Some((p.connections as f64, pick(p)?.median))).filter(|(_, y)| *y > 0.0).collect()
    };
    let all: Vec<(f64, f64)> = curve.servers.iter().flat_map(|s| medians(&s.points)).collect();
    let (low, high) = all.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, y)| (lo.min(*y), hi.max(*y)));
    // Room for the legend above the lines, at the top left.
    let (low, high) = if all.is_empty() { (1.0, 10.0) } else { (low / 2.0, high * 20.0) };
    let most = curve.connections.last().copied().unwrap_or(1).max(2) as f64;
    let better = match figure.better() {
        Better::Higher => "higher is better",
        Better::Lower => "lower is better",
    };
    let title = match figure {
        Figure::RoundTrips => "ping-pong by connections: round trips/s",
        _ => "ping-pong by connections: server CPU per round trip",
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{title} ({better})"), ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(52)
        .build_cartesian_2d((0.8..most * 1.25).log_scale(), (low..high).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("connections")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| short(*y))
        .y_desc(figure.unit())
        .label_style(("sans-serif", 11))
        .draw()?;
    for s in &curve.servers {
        let colour = colour(s.server);
        let points = medians(&s.points);
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(s.server.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}
