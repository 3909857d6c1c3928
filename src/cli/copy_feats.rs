//! `amdistill copy-feats IN [OUT]`: print or copy feature matrices, as Kaldi's `copy-feats`.
//!
//! Without OUT it prints the Kaldi text archive, exactly what
//! `copy-feats scp:feats.scp ark,t:-` prints.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use amdistill::atomic::AtomicFile;
use amdistill::features::kaldi_io::{
    write_binary_matrix, write_text_matrix, ArkReader, ArkWriter, ScpReader,
};
use amdistill::features::Matrix;
use amdistill::progress::BatchSummary;

/// Print features as a Kaldi text archive, or copy them to a binary or text archive.
///
/// Examples:
///   amdistill copy-feats exp/feats | head
///   amdistill copy-feats exp/feats --utt spk1-utt3
///   amdistill copy-feats scp:exp/feats/feats.scp ark:/tmp/feats.ark
///   amdistill copy-feats ark:kaldi/raw_fbank.1.ark ark,t:-
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Input: a feature directory, a `feats.scp` path, `scp:FILE`, `ark:FILE` (`ark:-` reads
    /// stdin) or the path of an archive.
    #[arg(value_name = "IN")]
    pub input: String,
    /// Output: `ark:FILE` (binary), `ark,t:FILE` (text), `ark,scp:ARK,SCP` or `ark,t,scp:ARK,SCP`
    /// (archive plus script); FILE `-` is stdout. Default: text archive on stdout.
    #[arg(value_name = "OUT")]
    pub output: Option<String>,
    /// Only this utterance (an error if it is absent).
    #[arg(long, value_name = "ID")]
    pub utt: Option<String>,
}

/// Where the matrices come from.
enum Input {
    Scp(PathBuf),
    Ark(PathBuf),
    Stdin,
}

fn parse_input(spec: &str) -> anyhow::Result<Input> {
    if let Some(rest) = spec.strip_prefix("scp:") {
        return Ok(Input::Scp(PathBuf::from(rest)));
    }
    if let Some(rest) = spec.strip_prefix("ark:") {
        return Ok(if rest == "-" {
            Input::Stdin
        } else {
            Input::Ark(PathBuf::from(rest))
        });
    }
    if spec.contains(":") && (spec.starts_with("ark,") || spec.starts_with("scp,")) {
        // Kaldi's read options (`ark,s,cs:`) do not change what is read.
        let (opts, rest) = spec.split_once(':').unwrap_or((spec, ""));
        return Ok(if opts.starts_with("scp") {
            Input::Scp(PathBuf::from(rest))
        } else if rest == "-" {
            Input::Stdin
        } else {
            Input::Ark(PathBuf::from(rest))
        });
    }
    if spec == "-" {
        return Ok(Input::Stdin);
    }
    let path = PathBuf::from(spec);
    if path.is_dir() {
        let scp = path.join("feats.scp");
        if !scp.exists() {
            bail!("{}: a directory without feats.scp", path.display());
        }
        return Ok(Input::Scp(scp));
    }
    if path.extension().is_some_and(|e| e == "scp") {
        return Ok(Input::Scp(path));
    }
    Ok(Input::Ark(path))
}

/// Where the matrices go.
struct Output {
    text: bool,
    ark: String,
    scp: Option<PathBuf>,
}

fn parse_output(spec: &str) -> anyhow::Result<Output> {
    let (opts, rest) = spec.split_once(':').with_context(|| {
        format!("output '{spec}': expected ark:FILE, ark,t:FILE or ark,scp:ARK,SCP")
    })?;
    let flags: Vec<&str> = opts.split(',').collect();
    if flags.first() != Some(&"ark") {
        bail!("output '{spec}': must start with 'ark' (e.g. ark:FILE, ark,t:FILE)");
    }
    let mut text = false;
    let mut with_scp = false;
    for f in &flags[1..] {
        match *f {
            "t" => text = true,
            "b" => text = false,
            "scp" => with_scp = true,
            // Kaldi's flush/sync options do not change the bytes.
            "f" | "nf" | "p" => {}
            other => bail!("output '{spec}': unknown option '{other}'"),
        }
    }
    let (ark, scp) = if with_scp {
        let (a, s) = rest
            .split_once(',')
            .with_context(|| format!("output '{spec}': ark,scp needs ARK,SCP"))?;
        (a.to_string(), Some(PathBuf::from(s)))
    } else {
        (rest.to_string(), None)
    };
    if ark.is_empty() {
        bail!("output '{spec}': no file name");
    }
    if ark == "-" && scp.is_some() {
        bail!("output '{spec}': a script needs the archive in a file, not stdout");
    }
    Ok(Output { text, ark, scp })
}

/// A destination for entries: stdout, or an archive file (with its script lines).
enum Sink {
    Stdout {
        out: std::io::BufWriter<std::io::StdoutLock<'static>>,
        text: bool,
    },
    File {
        writer: ArkWriter,
        scp: Option<(PathBuf, Vec<String>)>,
    },
}

impl Sink {
    fn open(out: &Output) -> anyhow::Result<Self> {
        if out.ark == "-" {
            let out_lock = std::io::stdout().lock();
            return Ok(Sink::Stdout {
                out: std::io::BufWriter::with_capacity(1 << 20, out_lock),
                text: out.text,
            });
        }
        let path = Path::new(&out.ark);
        let writer = if out.text {
            ArkWriter::create_text(path)?
        } else {
            ArkWriter::create(path)?
        };
        Ok(Sink::File {
            writer,
            scp: out.scp.clone().map(|p| (p, Vec::new())),
        })
    }

    fn write(&mut self, key: &str, m: &Matrix) -> anyhow::Result<()> {
        match self {
            Sink::Stdout { out, text } => {
                let r = if *text {
                    write_text_matrix(out, key, m)
                } else {
                    write_binary_matrix(out, key, m)
                };
                r.with_context(|| format!("writing utterance {key} to stdout"))
            }
            Sink::File { writer, scp } => {
                let spec = writer.write_matrix(key, m)?;
                if let Some((_, lines)) = scp {
                    lines.push(format!("{key} {spec}\n"));
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Stdout { mut out, .. } => out.flush().context("writing to stdout"),
            Sink::File { writer, scp } => {
                writer.commit()?;
                if let Some((path, lines)) = scp {
                    let mut f = AtomicFile::create(&path)?;
                    for l in &lines {
                        f.write_all(l.as_bytes())
                            .with_context(|| path.display().to_string())?;
                    }
                    f.commit()?;
                }
                Ok(())
            }
        }
    }
}

/// A broken pipe (`| head`) ends the output quietly, as for any Unix filter.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let input = parse_input(&args.input)?;
    let output = parse_output(args.output.as_deref().unwrap_or("ark,t:-"))?;
    let mut sink = Sink::open(&output)?;
    let mut done = 0usize;
    let mut total = 0usize;
    let mut found = false;
    let result = (|| -> anyhow::Result<()> {
        match input {
            Input::Scp(scp_path) => {
                let scp = ScpReader::open(&scp_path)?;
                let indices: Vec<usize> = match &args.utt {
                    Some(u) => vec![scp.position(u).with_context(|| {
                        format!("utterance {u} is not in {}", scp_path.display())
                    })?],
                    None => (0..scp.len()).collect(),
                };
                for i in indices {
                    total += 1;
                    found = true;
                    match scp.read(i) {
                        Ok(m) => {
                            sink.write(scp.key(i), &m)?;
                            done += 1;
                        }
                        // Like Kaldi's batch tools: report the bad entry, go on.
                        Err(e) => eprintln!("amdistill: warning: {e}"),
                    }
                }
            }
            Input::Ark(_) | Input::Stdin => {
                let reader = match &input {
                    Input::Ark(p) => ArkReader::open(p)?,
                    _ => {
                        let mut buf = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)
                            .context("reading stdin")?;
                        ArkReader::from_bytes("stdin", buf)
                    }
                };
                for entry in reader {
                    // An archive error leaves no way to find the next entry: stop there.
                    let (key, m) = entry?;
                    if args.utt.as_ref().is_some_and(|u| *u != key) {
                        continue;
                    }
                    total += 1;
                    found = true;
                    sink.write(&key, &m)?;
                    done += 1;
                    if args.utt.is_some() {
                        break;
                    }
                }
                if let (Some(u), false) = (&args.utt, found) {
                    bail!("utterance {u} is not in {}", args.input);
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        if is_broken_pipe(&e) {
            return Ok(());
        }
        return Err(e);
    }
    if let Err(e) = sink.finish() {
        if is_broken_pipe(&e) {
            return Ok(());
        }
        return Err(e);
    }
    let summary = BatchSummary { done, total };
    eprintln!("{summary}");
    if summary.failed() > 0 {
        bail!(
            "{} of {} matrices could not be read",
            summary.failed(),
            summary.total
        );
    }
    Ok(())
}
