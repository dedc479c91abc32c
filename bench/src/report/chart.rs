//! The report as an SVG chart drawn with plotters: one small bar chart per
//! figure, a bar per server at its median with a whisker from the lowest to
//! the highest round, and a red line at the figure's target if it has one.
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FigureReport, Report};
use crate::figures::Better;
use crate::servers::ServerKind;
use crate::stats::short;

const COLUMNS: usize = 2;
const PANEL: (u32, u32) = (560, 300);
const TITLE_HEIGHT: u32 = 50;

fn colour(server: ServerKind) -> RGBColor {
    match server {
        ServerKind::EvconnShared => RGBColor(0x1f, 0x6f, 0xb4),
        ServerKind::EvconnConnection => RGBColor(0x6a, 0xa8, 0xdc),
        ServerKind::Tokio => RGBColor(0xe0, 0x7b, 0x1a),
        ServerKind::Libevent => RGBColor(0x3a, 0x9a, 0x4a),
    }
}

pub fn svg(report: &Report, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let rows = report.figures.len().div_ceil(COLUMNS);
    let size = (PANEL.0 * COLUMNS as u32, PANEL.1 * rows as u32 + TITLE_HEIGHT);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "evconn vs native echo servers, {}: median, whisker min-max over rounds, (Nx) evconn / best native",
        report.meta.date
    );
    let body = root.titled(&title, ("sans-serif", 20)).map_err(|e| err(&e))?;
    let servers: Vec<ServerKind> = report.servers.iter().filter(|s| s.missing.is_none()).map(|s| s.server).collect();
    for (area, figure) in body.split_evenly((rows, COLUMNS)).iter().zip(&report.figures) {
        panel(area, figure, &servers).map_err(|e| err(&e))?;
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
    let top = if top > 0.0 { top * 1.2 } else { 1.0 };
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
