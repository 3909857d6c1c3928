//! Plots, as PNG and SVG (plotters): learning curves (train and dev frame accuracy per epoch,
//! per model) and frame accuracy against model size (parameters, log axis).
//!
//! Text in a PNG is rasterised by ab_glyph from a TTF file found at run time
//! ([`register_font`]: `$AMDISTILL_FONT`, then well-known DejaVu / Liberation / FreeFont /
//! Noto paths). SVG text is left to the viewer, so the SVG is always written; without a font
//! file the PNG is skipped with a warning naming the package to install (`fonts-dejavu-core`).
//!
//! plotters needs the font to *measure* text for a chart caption and for its legend box (an
//! SVG chart with either fails with `FontUnavailable` when no font is registered); the title
//! and legend are therefore drawn here as plain text elements with a fixed layout, which
//! also makes the SVG the same on every machine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::scoring::compare::{human_count, ScoredModel};

/// Pixel size of every plot.
pub const PLOT_SIZE: (u32, u32) = (960, 600);

/// TTF files tried, in order, after `$AMDISTILL_FONT`.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The font family every plot uses (the name the TTF is registered under).
const FAMILY: &str = "sans-serif";

/// Finds a TTF file and registers it with plotters as `sans-serif` (once per process);
/// returns its path, or `None` when no usable font file exists.
pub fn register_font() -> Option<&'static Path> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        let env = std::env::var_os("AMDISTILL_FONT").map(PathBuf::from);
        let candidates = env.into_iter().chain(FONT_PATHS.iter().map(PathBuf::from));
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return Some(path);
            }
        }
        None
    })
    .as_deref()
}

/// What a plot call wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotFiles {
    pub svg: PathBuf,
    /// `None` when no font was found (see `warning`).
    pub png: Option<PathBuf>,
    /// Why the PNG was skipped.
    pub warning: Option<String>,
}

/// One epoch of a training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    pub epoch: u32,
    /// Training frame accuracy, fraction.
    pub train_acc: Option<f64>,
    /// Validation (dev) frame accuracy, fraction.
    pub valid_acc: Option<f64>,
}

/// One model's learning curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub name: String,
    /// Sorted by epoch, one point per epoch.
    pub points: Vec<EpochPoint>,
}

/// Reads the `{"kind":"epoch", "epoch":N, "train_acc":x, "valid_acc":y ...}` lines of a
/// trainer's metrics file (JSON lines); other kinds are ignored. An epoch logged twice (a
/// resumed run) keeps its last line.
pub fn read_learning_curve(name: &str, path: impl AsRef<Path>) -> Result<Curve> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut points: Vec<EpochPoint> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| Error::parse(path, i + 1, e.to_string()))?;
        if v.get("kind").and_then(|k| k.as_str()) != Some("epoch") {
            continue;
        }
        let epoch = v
            .get("epoch")
            .and_then(|e| e.as_u64())
            .ok_or_else(|| Error::parse(path, i + 1, "epoch line without an integer 'epoch'"))?;
        let acc = |key: &str| -> Result<Option<f64>> {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x
                    .as_f64()
                    .filter(|a| a.is_finite())
                    .map(Some)
                    .ok_or_else(|| Error::parse(path, i + 1, format!("'{key}' is not a number"))),
            }
        };
        let p = EpochPoint {
            epoch: epoch as u32,
            train_acc: acc("train_acc")?,
            valid_acc: acc("valid_acc")?,
        };
        points.retain(|q| q.epoch != p.epoch);
        points.push(p);
    }
    points.sort_by_key(|p| p.epoch);
    if points
        .iter()
        .all(|p| p.train_acc.is_none() && p.valid_acc.is_none())
    {
        return Err(Error::parse(
            path,
            0,
            "no epoch lines with train_acc or valid_acc",
        ));
    }
    Ok(Curve {
        name: name.to_string(),
        points,
    })
}

/// Writes `dir/learning_curves.svg` and (with a font) `dir/learning_curves.png`.
pub fn write_learning_curves(curves: &[Curve], dir: impl AsRef<Path>) -> Result<PlotFiles> {
    check_curves(curves)?;
    write_plot(dir.as_ref(), "learning_curves", &Plot::Curves(curves))
}

/// Writes `dir/accuracy_vs_size.svg` and (with a font) `dir/accuracy_vs_size.png`: one point
/// per model that has a parameter count and a frame accuracy.
pub fn write_accuracy_vs_size(models: &[ScoredModel], dir: impl AsRef<Path>) -> Result<PlotFiles> {
    let points = size_points(models)?;
    write_plot(dir.as_ref(), "accuracy_vs_size", &Plot::Size(&points))
}

/// The learning-curve plot as SVG text (needs no font).
pub fn learning_curves_svg(curves: &[Curve]) -> Result<String> {
    check_curves(curves)?;
    render_svg(&Plot::Curves(curves))
}

/// The accuracy-against-size plot as SVG text (needs no font).
pub fn accuracy_vs_size_svg(models: &[ScoredModel]) -> Result<String> {
    let points = size_points(models)?;
    render_svg(&Plot::Size(&points))
}

fn check_curves(curves: &[Curve]) -> Result<()> {
    let any = curves
        .iter()
        .flat_map(|c| &c.points)
        .any(|p| p.train_acc.is_some() || p.valid_acc.is_some());
    if any {
        Ok(())
    } else {
        Err(Error::config("learning curves: no epoch with an accuracy"))
    }
}

/// Draws with any backend; errors as text (the backends' error types differ).
type DrawResult = std::result::Result<(), String>;

/// A plot that can be drawn on any backend.
enum Plot<'a> {
    Curves(&'a [Curve]),
    Size(&'a [SizePoint]),
}

impl Plot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        match self {
            Plot::Curves(c) => draw_learning_curves(root, c),
            Plot::Size(p) => draw_accuracy_vs_size(root, p),
        }
    }
}

fn render_svg(plot: &Plot<'_>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        plot.draw(&root)
            .map_err(|e| Error::config(format!("plot: {e}")))?;
        root.present()
            .map_err(|e| Error::config(format!("plot: {e}")))?;
    }
    Ok(svg)
}

fn write_plot(dir: &Path, stem: &str, plot: &Plot<'_>) -> Result<PlotFiles> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let svg_path = dir.join(format!("{stem}.svg"));
    let svg = render_svg(plot)?;
    write_atomic(&svg_path, |w| std::io::Write::write_all(w, svg.as_bytes()))?;
    let png_path = dir.join(format!("{stem}.png"));
    if register_font().is_none() {
        let warning = Some(format!(
            "no TTF font found (tried $AMDISTILL_FONT and {}); wrote {} but not {}: install \
                 fonts-dejavu-core (Debian/Ubuntu) or set AMDISTILL_FONT=/path/to/font.ttf",
            FONT_PATHS[0],
            svg_path.display(),
            png_path.display()
        ));
        return Ok(PlotFiles {
            svg: svg_path,
            png: None,
            warning,
        });
    }
    // The bitmap backend picks the image format from the extension, so the temporary keeps
    // `.png` at the end; renamed over the target once complete.
    let tmp = dir.join(format!(".{stem}.tmp.{}.png", std::process::id()));
    let result = (|| -> DrawResult {
        let root = BitMapBackend::new(&tmp, PLOT_SIZE).into_drawing_area();
        plot.draw(&root)?;
        root.present().map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::format(&png_path, format!("plot: {e}")));
    }
    std::fs::rename(&tmp, &png_path).map_err(|e| Error::io(&png_path, e))?;
    Ok(PlotFiles {
        svg: svg_path,
        png: Some(png_path),
        warning: None,
    })
}

/// Tableau's 10 colours: distinct and readable on white.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font()).color(&BLACK)
}

/// Draws the title centred at the top and returns the area below it.
fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> std::result::Result<DrawingArea<DB, Shift>, String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (w, _) = root.dim_in_pixel();
    root.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, 14),
        font(24).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(|e| e.to_string())?;
    Ok(root.margin(50, 10, 10, 10))
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Line { color: RGBColor, dashed: bool },
    Dot { color: RGBColor, filled: bool },
}

/// Width of a legend column for these labels: a fixed per-character estimate (about the
/// average advance of a sans-serif font at 16 px), since text cannot always be measured.
fn legend_width(labels: &[String]) -> u32 {
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    (chars * 9 + 60).clamp(120, 360)
}

/// Draws a legend (marks and labels, top-down) in `area`.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(Mark, String)],
) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    for (i, (mark, label)) in entries.iter().enumerate() {
        let y = 30 + 26 * i as i32;
        match *mark {
            Mark::Line { color, dashed } => {
                let style = color.stroke_width(3);
                if dashed {
                    for x in [6, 20] {
                        area.draw(&PathElement::new(vec![(x, y), (x + 9, y)], style))
                            .map_err(err)?;
                    }
                } else {
                    area.draw(&PathElement::new(vec![(6, y), (35, y)], style))
                        .map_err(err)?;
                }
                area.draw(&Circle::new((20, y), 4, color.filled()))
                    .map_err(err)?;
            }
            Mark::Dot { color, filled } => {
                let style = if filled {
                    color.filled()
                } else {
                    color.stroke_width(2)
                };
                area.draw(&Circle::new((20, y), 6, style)).map_err(err)?;
            }
        }
        area.draw(&Text::new(
            label.clone(),
            (44, y),
            font(16).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// `[lo, hi]` of the accuracies in percent, padded and rounded out to whole percents and
/// clamped to [0, 100].
fn percent_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(100.0 * v);
        hi = hi.max(100.0 * v);
    }
    let pad = ((hi - lo) * 0.08).max(1.0);
    let lo = (lo - pad).floor().max(0.0);
    let hi = (hi + pad).ceil().min(100.0);
    if hi > lo {
        (lo, hi)
    } else {
        ((lo - 1.0).max(0.0), (hi + 1.0).min(100.0))
    }
}

fn draw_learning_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[Curve],
) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let area = titled(root, "Learning curves: frame accuracy per epoch")?;
    let mut legend = Vec::new();
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if c.points.iter().any(|p| p.train_acc.is_some()) {
            legend.push((
                Mark::Line {
                    color,
                    dashed: false,
                },
                format!("{} train", c.name),
            ));
        }
        if c.points.iter().any(|p| p.valid_acc.is_some()) {
            legend.push((
                Mark::Line {
                    color,
                    dashed: true,
                },
                format!("{} dev", c.name),
            ));
        }
    }
    let labels: Vec<String> = legend.iter().map(|(_, l)| l.clone()).collect();
    let (w, _) = area.dim_in_pixel();
    let (plot, legend_area) = area.split_horizontally(w - legend_width(&labels));

    let points = curves.iter().flat_map(|c| &c.points);
    let first = points.clone().map(|p| p.epoch).min().unwrap_or(1) as i32;
    let last = points.clone().map(|p| p.epoch).max().unwrap_or(1) as i32;
    let (x0, x1) = if last > first {
        (first, last)
    } else {
        (first - 1, last + 1)
    };
    let (y0, y1) = percent_range(points.flat_map(|p| [p.train_acc, p.valid_acc]).flatten());

    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("frame accuracy (%)")
        .x_labels(((x1 - x0 + 1) as usize).min(12))
        .y_labels(10)
        .x_label_formatter(&|e| e.to_string())
        .y_label_formatter(&|a| format!("{a:.0}"))
        .label_style(font(15))
        .axis_desc_style(font(17))
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let train: Vec<(i32, f64)> = c
            .points
            .iter()
            .filter_map(|p| p.train_acc.map(|a| (p.epoch as i32, 100.0 * a)))
            .collect();
        let dev: Vec<(i32, f64)> = c
            .points
            .iter()
            .filter_map(|p| p.valid_acc.map(|a| (p.epoch as i32, 100.0 * a)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                train.iter().copied(),
                color.stroke_width(3),
            ))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                dev.iter().copied(),
                9,
                5,
                color.stroke_width(3),
            ))
            .map_err(err)?;
        chart
            .draw_series(
                train
                    .iter()
                    .chain(&dev)
                    .map(|&p| Circle::new(p, 4, color.filled())),
            )
            .map_err(err)?;
    }
    draw_legend(&legend_area, &legend)
}

/// A tick label for a parameter count: `human_count` without trailing zeros (`1M`, `2.5k`).
fn tick_count(p: f64) -> String {
    let s = human_count(p.round() as u64);
    let Some(at) = s.find(|c: char| c.is_ascii_alphabetic()) else {
        return s;
    };
    let (num, unit) = s.split_at(at);
    let num = num.trim_end_matches('0').trim_end_matches('.');
    format!("{num}{unit}")
}

/// One model in the size plot: parameters and accuracies (fractions).
struct SizePoint {
    name: String,
    params: u64,
    acc: f64,
    acc_nonsil: Option<f64>,
}

fn size_points(models: &[ScoredModel]) -> Result<Vec<SizePoint>> {
    let points: Vec<SizePoint> = models
        .iter()
        .filter_map(|m| {
            Some(SizePoint {
                name: m.name.clone(),
                params: m.score.model.params.filter(|&p| p > 0)?,
                acc: m.score.all.frame_acc?,
                acc_nonsil: m.score.nonsil.frame_acc,
            })
        })
        .collect();
    if points.is_empty() {
        return Err(Error::config(
            "accuracy against size: no model has both model.params and a frame accuracy",
        ));
    }
    Ok(points)
}

fn draw_accuracy_vs_size<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[SizePoint],
) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let area = titled(root, "Frame accuracy against model size")?;
    let color = COLORS[0];
    let other = COLORS[1];
    let mut legend = vec![(
        Mark::Dot {
            color,
            filled: true,
        },
        "all frames".to_string(),
    )];
    if points.iter().any(|p| p.acc_nonsil.is_some()) {
        legend.push((
            Mark::Dot {
                color: other,
                filled: false,
            },
            "without silence".to_string(),
        ));
    }
    let labels: Vec<String> = legend.iter().map(|(_, l)| l.clone()).collect();
    let (w, _) = area.dim_in_pixel();
    let (plot, legend_area) = area.split_horizontally(w - legend_width(&labels));

    let pmin = points.iter().map(|p| p.params).min().unwrap_or(1) as f64;
    let pmax = points.iter().map(|p| p.params).max().unwrap_or(1) as f64;
    // Half a decade either side, so end points and their labels stay inside.
    let (x0, x1) = (pmin / 3.0, pmax * 3.0);
    let (y0, y1) = percent_range(
        points
            .iter()
            .flat_map(|p| [Some(p.acc), p.acc_nonsil])
            .flatten(),
    );
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("parameters (log scale)")
        .y_desc("frame accuracy (%)")
        .x_label_formatter(&|p| tick_count(*p))
        .y_label_formatter(&|a| format!("{a:.0}"))
        .y_labels(10)
        .label_style(font(15))
        .axis_desc_style(font(17))
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(points.iter().filter_map(|p| {
            p.acc_nonsil
                .map(|a| Circle::new((p.params as f64, 100.0 * a), 6, other.stroke_width(2)))
        }))
        .map_err(err)?;
    chart
        .draw_series(
            points
                .iter()
                .map(|p| Circle::new((p.params as f64, 100.0 * p.acc), 6, color.filled())),
        )
        .map_err(err)?;
    for p in points {
        let (x, y) = chart.backend_coord(&(p.params as f64, 100.0 * p.acc));
        plot.draw(&Text::new(
            p.name.clone(),
            (
                x - plot.get_base_pixel().0 + 10,
                y - plot.get_base_pixel().1 - 6,
            ),
            font(15).pos(Pos::new(HPos::Left, VPos::Bottom)),
        ))
        .map_err(err)?;
    }
    draw_legend(&legend_area, &legend)
}

#[cfg(test)]
mod tests {
    use super::*;

    // No test in this binary registers a font, so these check that SVG needs none.
    #[test]
    fn learning_curve_svg_renders_without_a_font() {
        let curves = vec![Curve {
            name: "tdnn".into(),
            points: (1..=4)
                .map(|e| EpochPoint {
                    epoch: e,
                    train_acc: Some(0.4 + 0.1 * e as f64),
                    valid_acc: Some(0.35 + 0.1 * e as f64),
                })
                .collect(),
        }];
        let svg = learning_curves_svg(&curves).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.contains("Learning curves: frame accuracy per epoch"));
        assert!(svg.contains("tdnn dev") && svg.contains("epoch"));
        assert!(svg.contains("<polyline"), "lines drawn");
        // One epoch, dev only: a degenerate x range still draws.
        let one = vec![Curve {
            name: "x".into(),
            points: vec![EpochPoint {
                epoch: 1,
                train_acc: None,
                valid_acc: Some(0.5),
            }],
        }];
        assert!(learning_curves_svg(&one).unwrap().contains("x dev"));
        let none = vec![Curve {
            name: "y".into(),
            points: vec![],
        }];
        assert!(learning_curves_svg(&none).is_err());
    }

    #[test]
    fn tick_labels_drop_trailing_zeros() {
        assert_eq!(tick_count(1e6), "1M");
        assert_eq!(tick_count(2.5e6), "2.5M");
        assert_eq!(tick_count(10_000.0), "10k");
        assert_eq!(tick_count(300.0), "300");
    }

    #[test]
    fn percent_range_pads_and_clamps() {
        assert_eq!(percent_range([0.5, 0.6].into_iter()), (49.0, 61.0));
        assert_eq!(percent_range([1.0].into_iter()), (99.0, 100.0));
        assert_eq!(percent_range([0.0].into_iter()), (0.0, 1.0));
    }
}
