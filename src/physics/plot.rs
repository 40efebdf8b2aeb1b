//! The evidence as a picture (SVG, with `plotters`): the envelope spectrum with every
//! defect frequency and its harmonics marked in its family's colour, and the peaks that
//! stood out circled; below it, when given, a model's verdict on every window over time.

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::bearing::FaultFamily;
use super::evidence::Evidence;

/// DejaVu Sans (assets/fonts, Bitstream Vera licence): text needs a font, and a plant
/// server may have none.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn colour(family: FaultFamily) -> RGBColor {
    match family {
        FaultFamily::InnerRace => RGBColor(214, 39, 40),
        FaultFamily::OuterRace => RGBColor(31, 119, 180),
        FaultFamily::Ball => RGBColor(44, 160, 44),
        FaultFamily::Cage => RGBColor(148, 103, 189),
        FaultFamily::Normal | FaultFamily::Other => RGBColor(127, 127, 127),
    }
}

/// A model's verdict on one window of the recording.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowVerdict {
    pub start_s: f64,
    pub end_s: f64,
    pub label: String,
    pub family: FaultFamily,
    /// The model flagged the window as outside what it knows.
    pub out_of_distribution: bool,
}

/// The picture of `evidence`, titled `title`, as SVG text; with `windows`, a strip of the
/// model's per-window verdicts (coloured by family, grey where out of distribution) below.
pub fn envelope_svg(evidence: &Evidence, title: &str, windows: &[WindowVerdict]) -> Result<String, String> {
    // Registering the same font again is harmless; it must be there before any text.
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| "the built-in font does not load".to_string())?;
    let spectrum = &evidence.envelope;
    let top_hz = spectrum.frequency(spectrum.amplitudes.len().saturating_sub(1)).max(1.0);
    let top = spectrum.amplitudes.iter().skip(2).fold(0.0f64, |m, &v| m.max(v)).max(1e-12) * 1.1;
    let mut svg = String::new();
    {
        let height = if windows.is_empty() { 480 } else { 640 };
        let root = SVGBackend::with_string(&mut svg, (1000, height)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let (upper, lower) = root.split_vertically(480);
        let mut chart = ChartBuilder::on(&upper)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..top_hz, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("envelope frequency (Hz)")
            .y_desc("amplitude")
            .disable_mesh()
            .draw()
            .map_err(err)?;
        for family in &evidence.families {
            let c = colour(family.family);
            for peak in &family.peaks {
                let x = peak.expected_hz;
                if x >= top_hz {
                    continue;
                }
                let style =
                    if peak.what.contains("fr") { c.mix(0.35).stroke_width(1) } else { c.mix(0.8).stroke_width(1) };
                chart.draw_series(LineSeries::new([(x, 0.0), (x, top)], style)).map_err(err)?;
                if peak.prominence_db >= 6.0 {
                    let y = spectrum
                        .amplitudes
                        .get(spectrum.bins(peak.found_hz, peak.found_hz).start)
                        .copied()
                        .unwrap_or(0.0);
                    chart.draw_series([Circle::new((peak.found_hz, y), 5, c.stroke_width(2))]).map_err(err)?;
                }
            }
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(err)?
                .label(format!("{} ({} harmonics)", family.family.name(), family.harmonics_found))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        }
        let points = spectrum.amplitudes.iter().enumerate().map(|(i, &a)| (spectrum.frequency(i), a));
        chart.draw_series(LineSeries::new(points, BLACK.stroke_width(1))).map_err(err)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        if !windows.is_empty() {
            draw_windows(&lower, windows).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The verdict strip: one bar per window along time, labelled where the label changes.
fn draw_windows<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    windows: &[WindowVerdict],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let end = windows.iter().fold(0.0f64, |m, w| m.max(w.end_s)).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption("the model's verdict per window (grey: out of distribution)", ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..end, 0f64..1f64)?;
    chart.configure_mesh().x_desc("time (s)").disable_y_axis().disable_mesh().draw()?;
    let grey = RGBColor(190, 190, 190);
    chart.draw_series(windows.iter().map(|w| {
        let c = if w.out_of_distribution { grey } else { colour(w.family) };
        Rectangle::new([(w.start_s, 0.15), (w.end_s, 0.65)], c.mix(0.85).filled())
    }))?;
    let mut last: Option<&str> = None;
    for w in windows {
        if last != Some(w.label.as_str()) {
            chart.draw_series([Text::new(w.label.clone(), (w.start_s, 0.92), ("sans-serif", 12))])?;
            last = Some(w.label.as_str());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::synthetic::{impacts, RATE};
    use super::super::{analyze, Bearing, Settings};
    use super::*;

    #[test]
    fn the_picture_marks_every_family_and_circles_the_peaks_found() {
        let fr = 29.95;
        let bpfo = Bearing::cwru_drive_end().orders().bpfo * fr;
        let settings = Settings { shaft_hz: Some(fr), ..Settings::new(Bearing::cwru_drive_end()) };
        let evidence = analyze(&impacts(bpfo, |_| 1.0, 0.3, 8.0), RATE, &settings);
        let svg = envelope_svg(&evidence, "outer race", &[]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("envelope frequency (Hz)"), "{}", &svg[..200]);
        for family in ["inner_race", "outer_race", "ball", "cage"] {
            assert!(svg.contains(family), "{family} missing from the legend");
        }
        assert!(svg.matches("<circle").count() >= 3, "the outer race's peaks are circled");
        assert!(!svg.contains("verdict per window"));

        // With the model's verdicts: a bar per window, each label named where it starts.
        let window = |i: usize, label: &str, family, out_of_distribution| WindowVerdict {
            start_s: i as f64 * 0.17,
            end_s: (i + 1) as f64 * 0.17,
            label: label.into(),
            family,
            out_of_distribution,
        };
        let windows = [
            window(0, "OR021", FaultFamily::OuterRace, false),
            window(1, "OR021", FaultFamily::OuterRace, false),
            window(2, "B007", FaultFamily::Ball, true),
        ];
        let with = envelope_svg(&evidence, "outer race", &windows).unwrap();
        assert!(with.contains("verdict per window") && with.contains("OR021") && with.contains("B007"));
        assert!(with.matches("<rect").count() >= svg.matches("<rect").count() + 3, "a bar per window");
    }
}
