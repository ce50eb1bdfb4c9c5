//! The `--svg` chart: one panel per ratio row, one bar per backend.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::common::Res;
use crate::report::{BackendReport, Report};

/// One panel per ratio row, one bar per backend.
pub(crate) fn draw(report: &Report, path: &str) -> Res {
    type Metric = (&'static str, fn(&BackendReport) -> Option<f64>);
    let metrics: [Metric; 4] = [
        ("I/O: wall ÷ ideal (lower is better)", |r| {
            r.io.ok().map(|w| w.ratio)
        }),
        ("blocking: wall ÷ ideal (lower is better)", |r| {
            r.blocking.ok().map(|w| w.ratio)
        }),
        ("CPU: speedup over serial (higher is better)", |r| {
            r.cpu.ok().map(|c| c.speedup.median)
        }),
        ("crash: others done, share (higher is better)", |r| {
            r.crash
                .ok()
                .map(|c| f64::from(c.others_ok) / f64::from(c.tasks - 1))
        }),
    ];
    // Light colours, so that the backend's name stays readable on its bar.
    const COLORS: [RGBColor; 4] = [
        RGBColor(0x9e, 0xc3, 0xe6),
        RGBColor(0xf6, 0xc1, 0x8f),
        RGBColor(0xa8, 0xd8, 0xa0),
        RGBColor(0xe8, 0xa3, 0xa6),
    ];
    let names: Vec<&str> = report.results.iter().map(|r| r.backend.as_str()).collect();

    let root = SVGBackend::new(path, (1200, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "polyexec compare: {} cores, {}",
        report.machine.cores,
        if report.settings.quick {
            "--quick sizes"
        } else {
            "default sizes"
        }
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    for (area, (caption, metric)) in root.split_evenly((1, metrics.len())).iter().zip(metrics) {
        let values: Vec<f64> = report
            .results
            .iter()
            .map(|r| metric(r).unwrap_or(0.0))
            .collect();
        let top = values.iter().copied().fold(1.0_f64, f64::max) * 1.2;
        // x: one unit per backend; bars are labelled in the plot, not on the axis.
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 14))
            .margin(12)
            .x_label_area_size(8)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..names.len() as f64, 0.0..top)?;
        chart.configure_mesh().disable_x_mesh().x_labels(0).draw()?;
        chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
            let x = i as f64;
            Rectangle::new(
                [(x + 0.12, 0.0), (x + 0.88, v)],
                COLORS[i % COLORS.len()].filled(),
            )
        }))?;
        let above = TextStyle::from(("sans-serif", 14).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        let base = TextStyle::from(("sans-serif", 13).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(values.iter().enumerate().flat_map(|(i, &v)| {
            let x = i as f64 + 0.5;
            [
                Text::new(
                    format!("{v:.2}"),
                    (x, v.max(top * 0.07) + top * 0.01),
                    above.clone(),
                ),
                Text::new(names[i].to_owned(), (x, top * 0.01), base.clone()),
            ]
        }))?;
    }
    root.present()?;
    Ok(())
}
