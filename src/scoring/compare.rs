//! One comparison table over several scored models, in markdown and CSV.
//!
//! Columns: model, parameters, MB fp32, MB int8, MFLOPs/frame, single-core RTF, frame
//! accuracy, frame accuracy without silence, teacher agreement, KL(teacher || student),
//! top-N accuracy. Percentages have 2 decimals, MB are 10^6 bytes, KL is in nats/frame;
//! unknown values are `-`. Below the table, one Kaldi-style line per model
//! (`%FACC 85.23 [ 8523 / 10000 frames ] ...`, like the `%WER` lines of Kaldi's RESULTS).

use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::scoring::metrics::{pct_or_dash, Score};

/// A score with the name it is shown under.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredModel {
    pub name: String,
    pub score: Score,
}

impl ScoredModel {
    /// Reads a score file; the name is `name`, else the score's `model.name`, else the file
    /// stem (the parent directory's name when the file is `score.json`).
    pub fn load(path: impl AsRef<Path>, name: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        let score = Score::read_json(path)?;
        let name = match (name, &score.model.name) {
            (Some(n), _) => n.to_string(),
            (None, Some(n)) => n.clone(),
            (None, None) => name_from_path(path),
        };
        Ok(ScoredModel { name, score })
    }
}

fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem == "score" {
        if let Some(dir) = path.parent().and_then(Path::file_name) {
            return dir.to_string_lossy().into_owned();
        }
    }
    stem
}

/// The comparison table: a header and one row of cells per model, for markdown (sizes in
/// human units) and for CSV (parameters as plain integers).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareTable {
    pub header: Vec<String>,
    /// Cells for markdown.
    pub rows: Vec<Vec<String>>,
    /// Cells for CSV.
    pub csv_rows: Vec<Vec<String>>,
    /// One `%FACC` line per model.
    pub kaldi_lines: Vec<String>,
}

impl CompareTable {
    /// Builds the table, one row per model in the given order.
    pub fn new(models: &[ScoredModel]) -> Self {
        let top_n = match models.first() {
            Some(m) if models.iter().all(|x| x.score.top_n == m.score.top_n) => {
                format!("top-{} %", m.score.top_n)
            }
            _ => "top-N %".to_string(),
        };
        let header = [
            "model",
            "parameters",
            "MB fp32",
            "MB int8",
            "MFLOPs/frame",
            "RTF (1 core)",
            "frame acc %",
            "frame acc w/o sil %",
            "agreement %",
            "KL (nats/frame)",
            &top_n,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (mut rows, mut csv_rows, mut kaldi_lines) = (Vec::new(), Vec::new(), Vec::new());
        for m in models {
            let s = &m.score;
            let info = &s.model;
            let fixed = |v: Option<f64>, d: usize| {
                v.map_or_else(|| "-".to_string(), |v| format!("{v:.d$}"))
            };
            let mb = |b: Option<u64>| fixed(b.map(|b| b as f64 / 1e6), 2);
            let common = vec![
                mb(info.bytes_fp32),
                mb(info.bytes_int8),
                fixed(info.mflops_per_frame, 2),
                fixed(info.rtf, 4),
                pct_or_dash(s.all.frame_acc),
                pct_or_dash(s.nonsil.frame_acc),
                pct_or_dash(s.all.teacher_agreement),
                fixed(s.all.kl, 4),
                pct_or_dash(s.all.top_n_acc),
            ];
            let mut row = vec![m.name.clone(), info.params.map_or("-".into(), human_count)];
            row.extend(common.iter().cloned());
            rows.push(row);
            let mut csv = vec![
                m.name.clone(),
                info.params.map_or("-".into(), |p| p.to_string()),
            ];
            csv.extend(common);
            csv_rows.push(csv);
            kaldi_lines.push(kaldi_line(m));
        }
        CompareTable {
            header,
            rows,
            csv_rows,
            kaldi_lines,
        }
    }

    /// The table in markdown, columns padded to equal width, then the `%FACC` lines in a
    /// code block.
    pub fn markdown(&self) -> String {
        let ncol = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count()).max(3);
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                // The model name is left-aligned, numbers right-aligned.
                if i == 0 {
                    s.push_str(&format!(" {c:<w$} |", w = width[i]));
                } else {
                    s.push_str(&format!(" {c:>w$} |", w = width[i]));
                }
            }
            s.push('\n');
            s
        };
        let mut out = line(&self.header);
        out.push('|');
        for (i, w) in width.iter().enumerate().take(ncol) {
            if i == 0 {
                out.push_str(&format!(":{}|", "-".repeat(w + 1)));
            } else {
                out.push_str(&format!("{}:|", "-".repeat(w + 1)));
            }
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out.push_str("\n```\n");
        for l in &self.kaldi_lines {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("```\n");
        out
    }

    /// The table as CSV (RFC 4180 quoting where a cell needs it).
    pub fn csv(&self) -> String {
        let line = |cells: &[String]| {
            cells
                .iter()
                .map(|c| {
                    if c.contains([',', '"', '\n']) {
                        format!("\"{}\"", c.replace('"', "\"\""))
                    } else {
                        c.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        };
        let mut out = line(&self.header);
        for row in &self.csv_rows {
            out.push_str(&line(row));
        }
        out
    }

    /// Writes `dir/compare.md` and `dir/compare.csv` (atomically; `dir` is created).
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let md = self.markdown();
        write_atomic(dir.join("compare.md"), |w| {
            std::io::Write::write_all(w, md.as_bytes())
        })?;
        let csv = self.csv();
        write_atomic(dir.join("compare.csv"), |w| {
            std::io::Write::write_all(w, csv.as_bytes())
        })
    }
}

/// `1234567` -> `1.23M`, `45600` -> `45.6k`, `999` -> `999`.
pub fn human_count(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

/// `%FACC 85.23 [ 8523 / 10000 frames ], 90.10 w/o silence, 97.00 agreement, NAME`.
fn kaldi_line(m: &ScoredModel) -> String {
    let s = &m.score;
    let correct = s
        .all
        .frame_acc
        .map_or(0, |a| (a * s.all.frames as f64).round() as u64);
    let mut line = format!(
        "%FACC {} [ {correct} / {} frames ], {} w/o silence",
        pct_or_dash(s.all.frame_acc),
        s.all.frames,
        pct_or_dash(s.nonsil.frame_acc)
    );
    if s.all.teacher_frames > 0 {
        line.push_str(&format!(
            ", {} agreement",
            pct_or_dash(s.all.teacher_agreement)
        ));
    }
    line.push_str(&format!(", {}", m.name));
    line
}
