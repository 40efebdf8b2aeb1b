//! The evidence as a picture (SVG, with `plotters`): the envelope spectrum with every
//! defect frequency and its harmonics marked in its family's colour, and the peaks that
//! stood out circled.

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

/// The picture of `evidence`, titled `title`, as SVG text.
pub fn envelope_svg(evidence: &Evidence, title: &str) -> Result<String, String> {
    // Registering the same font again is harmless; it must be there before any text.
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| "the built-in font does not load".to_string())?;
    let spectrum = &evidence.envelope;
    let top_hz = spectrum.frequency(spectrum.amplitudes.len().saturating_sub(1)).max(1.0);
    let top = spectrum.amplitudes.iter().skip(2).fold(0.0f64, |m, &v| m.max(v)).max(1e-12) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 480)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
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
        root.present().map_err(err)?;
    }
    Ok(svg)
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
        let svg = envelope_svg(&evidence, "outer race").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("envelope frequency (Hz)"), "{}", &svg[..200]);
        for family in ["inner_race", "outer_race", "ball", "cage"] {
            assert!(svg.contains(family), "{family} missing from the legend");
        }
        assert!(svg.matches("<circle").count() >= 3, "the outer race's peaks are circled");
    }
}
