//! Running Debian's `flite` and reading what it says: the waveform (16-bit mono WAV) and the
//! phone end times printed by `-psdur` (`pau:0.164 s:0.281 eh:0.387 ... pau:1.909`).
//!
//! Phone names are flite's: lowercase ARPAbet plus `pau` for silence, written as they are.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::labels::PhoneSegment;

/// The command that installs flite on Debian and Ubuntu.
pub const INSTALL_HINT: &str = "apt-get install -y flite";

/// A flite voice and the pitch range (`int_f0_target_mean`, Hz) the generator draws from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Voice {
    /// flite's name for it (`-voice NAME`).
    pub name: &'static str,
    /// `(low, high)` mean F0 in Hz, or `None` where flite ignores `int_f0_target_mean`
    /// (rms: checked, the output is byte-identical for any value).
    pub f0_range: Option<(f32, f32)>,
}

/// The voices built into Debian's flite 2.2 that synthesise at 16 kHz.
pub const VOICES: &[Voice] = &[
    Voice {
        name: "kal16",
        f0_range: Some((85.0, 130.0)),
    },
    Voice {
        name: "awb",
        f0_range: Some((85.0, 135.0)),
    },
    Voice {
        name: "rms",
        f0_range: None,
    },
    Voice {
        name: "slt",
        f0_range: Some((150.0, 220.0)),
    },
];

impl Voice {
    /// Looks a voice up by name; an unknown one is an error listing the known voices.
    pub fn by_name(name: &str) -> Result<Voice> {
        VOICES
            .iter()
            .copied()
            .find(|v| v.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = VOICES.iter().map(|v| v.name).collect();
                Error::config(format!(
                    "unknown voice '{name}' (known: {})",
                    known.join(", ")
                ))
            })
    }
}

/// What `flite` on this machine offers.
#[derive(Debug, Clone, PartialEq)]
pub struct FliteInfo {
    /// The version line of `flite --version` (which exits with status 1 on Debian).
    pub version: String,
    /// Voice names from `flite -lv`.
    pub voices: Vec<String>,
}

/// Checks that `flite` runs and lists its voices; if it is missing the error names the
/// command that installs it.
pub fn check_installed() -> Result<FliteInfo> {
    let out = Command::new("flite").arg("-lv").output().map_err(|e| {
        Error::config(format!(
            "cannot run flite ({e}); install it with `{INSTALL_HINT}` (the synthetic corpus is made with flite)"
        ))
    })?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let voices: Vec<String> = match listing.trim().strip_prefix("Voices available:") {
        Some(rest) if out.status.success() => rest.split_whitespace().map(str::to_string).collect(),
        _ => {
            return Err(Error::config(format!(
                "`flite -lv` failed ({}): {}{}; reinstall it with `{INSTALL_HINT}`",
                out.status,
                listing.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    let version = Command::new("flite")
        .arg("--version")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .find(|l| l.contains("version"))
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    Ok(FliteInfo { version, voices })
}

/// What to synthesise and how.
#[derive(Debug, Clone, PartialEq)]
pub struct FliteRequest {
    pub voice: &'static str,
    /// The text as flite should read it (words plus final punctuation).
    pub text: String,
    /// flite's `duration_stretch`: > 1 speaks more slowly.
    pub duration_stretch: f32,
    /// flite's `int_f0_target_mean` in Hz, when the voice honours it.
    pub f0_mean: Option<f32>,
}

/// One synthesised utterance as flite made it.
#[derive(Debug, Clone, PartialEq)]
pub struct FliteOutput {
    /// Mono samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Samples per second of `samples`.
    pub sample_rate: u32,
    /// Phones in time order, contiguous from 0 s, times in seconds.
    pub phones: Vec<PhoneSegment>,
}

/// Runs flite for `req`, using `tmp_wav` for its output (deleted afterwards). Errors name the
/// utterance `utt`.
pub fn synthesize(utt: &str, req: &FliteRequest, tmp_wav: &Path) -> Result<FliteOutput> {
    let mut cmd = Command::new("flite");
    cmd.arg("-voice").arg(req.voice);
    cmd.arg("--setf")
        .arg(format!("duration_stretch={}", req.duration_stretch));
    if let Some(f0) = req.f0_mean {
        cmd.arg("--setf").arg(format!("int_f0_target_mean={f0}"));
    }
    cmd.arg("-psdur")
        .arg("-t")
        .arg(&req.text)
        .arg("-o")
        .arg(tmp_wav);
    die_with_parent(&mut cmd);
    let out = cmd.output().map_err(|e| {
        Error::utterance(
            utt,
            format!("cannot run flite ({e}); install it with `{INSTALL_HINT}`"),
        )
    })?;
    let result = (|| {
        if !out.status.success() {
            return Err(Error::utterance(
                utt,
                format!(
                    "flite failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let phones = parse_psdur(&String::from_utf8_lossy(&out.stdout))
            .map_err(|m| Error::utterance(utt, m))?;
        let (samples, sample_rate) = read_wav_mono(tmp_wav)?;
        Ok(FliteOutput {
            samples,
            sample_rate,
            phones,
        })
    })();
    let _ = std::fs::remove_file(tmp_wav);
    result
}

/// Parses flite's `-psdur` output (`phone:end_seconds` tokens separated by spaces) into
/// contiguous segments starting at 0. Times that go backwards (flite split the text into
/// several utterances), malformed tokens or no phones at all are errors.
pub fn parse_psdur(stdout: &str) -> std::result::Result<Vec<PhoneSegment>, String> {
    let mut phones: Vec<PhoneSegment> = Vec::new();
    let mut start = 0.0f64;
    for tok in stdout.split_whitespace() {
        let (name, end) = tok
            .rsplit_once(':')
            .ok_or_else(|| format!("flite -psdur: unexpected token '{tok}'"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("flite -psdur: bad phone name in '{tok}'"));
        }
        let end: f64 = match end.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v,
            _ => return Err(format!("flite -psdur: bad end time in '{tok}'")),
        };
        if end < start {
            return Err(format!(
                "flite -psdur: phone '{tok}' ends at {end} s before the previous one ({start} s); \
                 flite split the text into several utterances"
            ));
        }
        phones.push(PhoneSegment {
            phone: name.to_string(),
            start,
            end,
        });
        start = end;
    }
    if phones.is_empty() {
        return Err("flite -psdur printed no phones".to_string());
    }
    Ok(phones)
}

/// Reads a mono 16-bit PCM WAV (what flite writes) into samples in [-1, 1].
pub fn read_wav_mono(path: &Path) -> Result<(Vec<f32>, u32)> {
    let reader = hound::WavReader::open(path)
        .map_err(|e| Error::format(path, format!("cannot read flite's WAV: {e}")))?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(Error::format(
            path,
            format!(
                "expected 16-bit mono PCM from flite, got {} channels, {} bits, {:?}",
                spec.channels, spec.bits_per_sample, spec.sample_format
            ),
        ));
    }
    let samples = reader
        .into_samples::<i16>()
        .map(|s| s.map(|v| v as f32 / 32768.0))
        .collect::<std::result::Result<Vec<f32>, _>>()
        .map_err(|e| Error::format(path, format!("truncated WAV from flite: {e}")))?;
    Ok((samples, spec.sample_rate))
}

/// A per-process temporary WAV path for `utt` inside `dir`.
pub fn tmp_wav_path(dir: &Path, utt: &str) -> PathBuf {
    dir.join(format!("{utt}.flite.tmp.{}.wav", std::process::id()))
}

/// Has the child killed when this thread's process dies (Linux), so that a `kill -9` of
/// amdistill cannot leave a flite behind that writes into the corpus after a rerun cleaned
/// up. (The signal follows the spawning thread: flite runs synchronously on it.)
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only makes the async-signal-safe prctl call.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_psdur() {
        let p = parse_psdur("pau:0.164 s:0.281 eh:0.387 pau:0.500 \n").unwrap();
        let names: Vec<&str> = p.iter().map(|s| s.phone.as_str()).collect();
        assert_eq!(names, ["pau", "s", "eh", "pau"]);
        assert_eq!(p[0].start, 0.0);
        assert_eq!(p[1].start, 0.164);
        assert_eq!(p[3].end, 0.5);
    }

    #[test]
    fn rejects_bad_psdur() {
        assert!(parse_psdur("").unwrap_err().contains("no phones"));
        assert!(parse_psdur("pau:0.2 s")
            .unwrap_err()
            .contains("unexpected token"));
        assert!(parse_psdur("pau:0.2 s:x")
            .unwrap_err()
            .contains("bad end time"));
        assert!(parse_psdur("pau:0.2 s:0.1")
            .unwrap_err()
            .contains("several utterances"));
        assert!(parse_psdur("pau:0.2 s/:0.3")
            .unwrap_err()
            .contains("bad phone name"));
    }

    #[test]
    fn unknown_voice_lists_known() {
        let e = Voice::by_name("bogus").unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("slt"), "{e}");
    }
}
