//! Audio input: every format, channel handling, resampling, segments and every bad input.
//!
//! WAV and SPHERE files are written by the tests in a temporary directory; the FLAC and sox-made
//! SPHERE fixtures in tests/fixtures/audio hold a signal the tests recompute (see its README).

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use amdistill::audio::{
    detect_format, read_audio, read_audio_segment, resample, AudioFormat, AudioOptions,
    ChannelSelect, Waveform,
};
use amdistill::Error;
use hound::{SampleFormat, WavSpec, WavWriter};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

/// The fixtures' first channel, as in make_fixtures.sh.
fn fixture_x() -> Vec<i32> {
    (0..1600)
        .map(|i: i32| 1000 * ((i % 64 - 32).abs() - 16) + (i * 7919 % 201) - 100)
        .collect()
}

/// The fixtures' second channel.
fn fixture_y() -> Vec<i32> {
    (0..1600).map(|i: i32| (i * 13 % 2000) - 1000).collect()
}

fn opts(rate: u32) -> AudioOptions {
    AudioOptions {
        sample_rate: rate,
        ..AudioOptions::default()
    }
}

fn no_resample(rate: u32) -> AudioOptions {
    AudioOptions {
        sample_rate: rate,
        resample: false,
        channel: ChannelSelect::Downmix,
    }
}

fn spec(channels: u16, rate: u32, bits: u16, format: SampleFormat) -> WavSpec {
    WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    }
}

/// Writes interleaved integer samples with hound.
fn write_wav_int(path: &Path, spec: WavSpec, samples: &[i32]) {
    let mut w = WavWriter::create(path, spec).unwrap();
    for &s in samples {
        match spec.bits_per_sample {
            8 => w.write_sample(s as i8).unwrap(),
            16 => w.write_sample(s as i16).unwrap(),
            _ => w.write_sample(s).unwrap(),
        }
    }
    w.finalize().unwrap();
}

fn write_wav_f32(path: &Path, spec: WavSpec, samples: &[f32]) {
    let mut w = WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A RIFF/WAVE file from raw parts: `fmt` is the fmt chunk's body, `data` the data chunk's.
fn raw_wav(fmt: &[u8], data: &[u8], data_len_field: Option<u32>) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&((4 + 8 + fmt.len() + 8 + data.len()) as u32).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    v.extend_from_slice(fmt);
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len_field.unwrap_or(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// A 16-byte fmt chunk body (PCMWAVEFORMAT / WAVEFORMAT with bits).
fn fmt16(tag: u16, channels: u16, rate: u32, bits: u16, block_align: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * block_align as u32).to_le_bytes());
    f.extend_from_slice(&block_align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f
}

/// A 40-byte WAVE_FORMAT_EXTENSIBLE fmt chunk body with the PCM (or IEEE float) sub-format.
fn extensible_fmt(
    channels: u16,
    rate: u32,
    container_bits: u16,
    valid_bits: u16,
    pcm: bool,
) -> Vec<u8> {
    let mut f = fmt16(
        0xFFFE,
        channels,
        rate,
        container_bits,
        channels * container_bits / 8,
    );
    f.extend_from_slice(&22u16.to_le_bytes()); // cbSize
    f.extend_from_slice(&valid_bits.to_le_bytes());
    f.extend_from_slice(&4u32.to_le_bytes()); // channel mask
    let tag = if pcm { 0x01 } else { 0x03 };
    f.extend_from_slice(&[
        tag, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
    ]); // KSDATAFORMAT GUID
    f
}

/// A NIST SPHERE file: a 1024-byte header with `fields` (one per line) and `data` after it.
fn sphere(fields: &[&str], data: &[u8]) -> Vec<u8> {
    let mut head = String::from("NIST_1A\n   1024\n");
    for f in fields {
        head.push_str(f);
        head.push('\n');
    }
    head.push_str("end_head\n");
    let mut v = head.into_bytes();
    assert!(v.len() <= 1024);
    v.resize(1024, b' ');
    v.extend_from_slice(data);
    v
}

fn pcm16(samples: &[i32], big_endian: bool) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|&s| {
            if big_endian {
                (s as i16).to_be_bytes()
            } else {
                (s as i16).to_le_bytes()
            }
        })
        .collect()
}

fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f64> {
    (0..n)
        .map(|i| amp * (2.0 * PI * freq * i as f64 / rate as f64).sin())
        .collect()
}

/// Amplitude of the `freq` component of `x` (a least-squares projection on sin and cos).
fn amplitude_at(x: &[f32], rate: u32, freq: f64) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let ph = 2.0 * PI * freq * i as f64 / rate as f64;
        s += v as f64 * ph.sin();
        c += v as f64 * ph.cos();
    }
    2.0 * (s * s + c * c).sqrt() / x.len() as f64
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Asserts `r` is an `Error::Format` about `path` whose message contains every one of `needles`.
#[track_caller]
fn assert_format_err(r: amdistill::Result<Waveform>, path: &Path, needles: &[&str]) {
    let e = match r {
        Ok(w) => panic!("expected an error, got {} samples", w.samples.len()),
        Err(e) => e,
    };
    assert!(
        matches!(e, Error::Format { .. }),
        "not a format error: {e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
    for n in needles {
        assert!(msg.contains(n), "message lacks {n:?}: {msg}");
    }
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// WAV: every sample format

#[test]
fn wav_16bit_mono_is_divided_by_32768() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("a.wav");
    let vals = [-32768, -1, 0, 1, 16384, 32767];
    write_wav_int(&p, spec(1, 16000, 16, SampleFormat::Int), &vals);
    let w = read_audio(&p, &opts(16000)).unwrap();
    assert_eq!(w.sample_rate, 16000);
    let want: Vec<f32> = vals.iter().map(|&v| v as f32 / 32768.0).collect();
    assert_eq!(w.samples, want);
    assert_eq!(detect_format(&p).unwrap(), AudioFormat::Wav);
}

#[test]
fn wav_8bit_unsigned_is_centred() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("a.wav");
    // hound stores i8 v as the unsigned byte v + 128.
    write_wav_int(
        &p,
        spec(1, 16000, 8, SampleFormat::Int),
        &[-128, -64, 0, 64, 127],
    );
    let w = read_audio(&p, &opts(16000)).unwrap();
    assert_eq!(w.samples, vec![-1.0, -0.5, 0.0, 0.5, 127.0 / 128.0]);
    // The byte on disk is unsigned: silence is 0x80.
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes[bytes.len() - 3], 0x80);
}

#[test]
fn wav_24bit_extensible() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("a.wav");
    let vals = [-(1 << 23), -4096, 0, 1 << 22, (1 << 23) - 1];
    write_wav_int(&p, spec(1, 16000, 24, SampleFormat::Int), &vals);
    // hound writes more than 16 bits as WAVE_FORMAT_EXTENSIBLE (format tag 0xFFFE).
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[20..22], &[0xFE, 0xFF]);
    let w = read_audio(&p, &opts(16000)).unwrap();
    let want: Vec<f32> = vals.iter().map(|&v| v as f32 / 8388608.0).collect();
    assert_eq!(w.samples, want);
}

#[test]
fn wav_24bit_in_32bit_container_and_its_segments() {
    // WAVE_FORMAT_EXTENSIBLE, 24 valid bits left-justified in 4-byte containers.
    let dir = TempDir::new().unwrap();
    let vals: Vec<i32> = (0..1000).map(|i| (i - 500) * 1000).collect();
    let data: Vec<u8> = vals.iter().flat_map(|&v| (v << 8).to_le_bytes()).collect();
    let p = write(
        &dir,
        "a.wav",
        &raw_wav(&extensible_fmt(1, 1000, 32, 24, true), &data, None),
    );
    let want: Vec<f32> = vals.iter().map(|&v| v as f32 / 8388608.0).collect();
    assert_eq!(read_audio(&p, &opts(1000)).unwrap().samples, want);
    let seg = read_audio_segment(&p, 0.25, 0.5, &opts(1000)).unwrap();
    assert_eq!(seg.samples, want[250..500]);
}

#[test]
fn wav_32bit_int() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("a.wav");
    let vals = [i32::MIN, -65536, 0, 1 << 30, i32::MAX];
    write_wav_int(&p, spec(1, 16000, 32, SampleFormat::Int), &vals);
    let w = read_audio(&p, &opts(16000)).unwrap();
    let want: Vec<f32> = vals.iter().map(|&v| v as f32 / 2147483648.0).collect();
    assert_eq!(w.samples, want);
    assert_eq!(w.samples[0], -1.0);
}

#[test]
fn wav_float32_is_kept_as_is() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("a.wav");
    let vals = [-1.0f32, -0.25, 0.0, 0.123456, 1.0, 1.5];
    write_wav_f32(&p, spec(1, 16000, 32, SampleFormat::Float), &vals);
    assert_eq!(read_audio(&p, &opts(16000)).unwrap().samples, vals);
}

#[test]
fn wav_plain_ieee_float_format_tag() {
    // WAVE_FORMAT_IEEE_FLOAT (tag 3) with a 16-byte fmt chunk, as many tools write it.
    let dir = TempDir::new().unwrap();
    let vals = [0.5f32, -0.75, 0.0];
    let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = write(
        &dir,
        "f.wav",
        &raw_wav(&fmt16(3, 1, 8000, 32, 4), &data, None),
    );
    assert_eq!(read_audio(&p, &opts(8000)).unwrap().samples, vals);
}

#[test]
fn wav_stereo_downmix_and_channel_choice() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("s.wav");
    // Frames (L, R): (1000, 3000), (-2000, 0), (32767, -32768).
    write_wav_int(
        &p,
        spec(2, 16000, 16, SampleFormat::Int),
        &[1000, 3000, -2000, 0, 32767, -32768],
    );
    let mean = read_audio(&p, &opts(16000)).unwrap();
    assert_eq!(
        mean.samples,
        vec![2000.0 / 32768.0, -1000.0 / 32768.0, -0.5 / 32768.0]
    );
    let mut o = opts(16000);
    o.channel = ChannelSelect::Channel(0);
    assert_eq!(
        read_audio(&p, &o).unwrap().samples,
        vec![1000.0 / 32768.0, -2000.0 / 32768.0, 32767.0 / 32768.0]
    );
    o.channel = ChannelSelect::Channel(1);
    assert_eq!(
        read_audio(&p, &o).unwrap().samples,
        vec![3000.0 / 32768.0, 0.0, -1.0]
    );
    o.channel = ChannelSelect::Channel(2);
    assert_format_err(read_audio(&p, &o), &p, &["channel 2", "2 channel"]);
}

#[test]
fn wav_four_channels_extensible_downmix() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("q.wav");
    // One frame per row; the mean of each row is 1000 * row.
    let rows: [[i32; 4]; 3] = [[0, 0, 0, 0], [1000, 2000, 0, 1000], [8000, 0, 0, 0]];
    let flat: Vec<i32> = rows.iter().flatten().copied().collect();
    write_wav_int(&p, spec(4, 16000, 16, SampleFormat::Int), &flat);
    assert_eq!(
        &std::fs::read(&p).unwrap()[20..22],
        &[0xFE, 0xFF],
        "more than 2 channels: extensible"
    );
    let w = read_audio(&p, &opts(16000)).unwrap();
    assert_eq!(w.samples, vec![0.0, 1000.0 / 32768.0, 2000.0 / 32768.0]);
    let mut o = opts(16000);
    o.channel = ChannelSelect::Channel(3);
    assert_eq!(
        read_audio(&p, &o).unwrap().samples,
        vec![0.0, 1000.0 / 32768.0, 0.0]
    );
}

#[test]
fn format_comes_from_magic_bytes_not_extension() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("really_a_wav.flac");
    write_wav_int(&p, spec(1, 16000, 16, SampleFormat::Int), &[100, 200]);
    assert_eq!(detect_format(&p).unwrap(), AudioFormat::Wav);
    assert_eq!(read_audio(&p, &opts(16000)).unwrap().samples.len(), 2);
    let s = write(
        &dir,
        "really_a_sphere.wav",
        &std::fs::read(fixture("mono16.sph")).unwrap(),
    );
    assert_eq!(detect_format(&s).unwrap(), AudioFormat::Sphere);
    let f = write(
        &dir,
        "really_a_flac.sph",
        &std::fs::read(fixture("mono16.flac")).unwrap(),
    );
    assert_eq!(detect_format(&f).unwrap(), AudioFormat::Flac);
    assert_eq!(read_audio(&f, &opts(16000)).unwrap().samples.len(), 1600);
}

// ---------------------------------------------------------------------------------------------
// SPHERE

#[test]
fn sphere_from_sox_matches_the_signal() {
    let p = fixture("mono16.sph");
    assert_eq!(detect_format(&p).unwrap(), AudioFormat::Sphere);
    let w = read_audio(&p, &opts(16000)).unwrap();
    let want: Vec<f32> = fixture_x().iter().map(|&v| v as f32 / 32768.0).collect();
    assert_eq!(w.samples, want);
}

#[test]
fn sphere_little_and_big_endian_timit_style() {
    let dir = TempDir::new().unwrap();
    let vals = [0, 1, -1, 300, -32768, 32767, 256];
    let want: Vec<f32> = vals.iter().map(|&v| v as f32 / 32768.0).collect();
    for (order, be) in [("01", false), ("10", true)] {
        // TIMIT's field set, in TIMIT's order.
        let fields = [
            "database_id -s5 TIMIT".to_string(),
            "database_version -s3 1.0".to_string(),
            "utterance_id -s8 aks0_sa1".to_string(),
            "channel_count -i 1".to_string(),
            format!("sample_count -i {}", vals.len()),
            "sample_rate -i 16000".to_string(),
            "sample_min -i -32768".to_string(),
            "sample_max -i 32767".to_string(),
            "sample_n_bytes -i 2".to_string(),
            format!("sample_byte_format -s2 {order}"),
            "sample_sig_bits -i 16".to_string(),
        ];
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let p = write(
            &dir,
            &format!("t{order}.sph"),
            &sphere(&fields, &pcm16(&vals, be)),
        );
        let w = read_audio(&p, &opts(16000)).unwrap();
        assert_eq!(w.samples, want, "byte order {order}");
        assert_eq!(w.sample_rate, 16000);
    }
}

#[test]
fn sphere_stereo_and_32bit() {
    let dir = TempDir::new().unwrap();
    // Stereo 16-bit big endian: frames (1000, 3000), (-4000, 0).
    let p = write(
        &dir,
        "st.sph",
        &sphere(
            &[
                "sample_count -i 2",
                "sample_rate -i 8000",
                "channel_count -i 2",
                "sample_n_bytes -i 2",
                "sample_byte_format -s2 10",
                "sample_coding -s3 pcm",
            ],
            &pcm16(&[1000, 3000, -4000, 0], true),
        ),
    );
    assert_eq!(
        read_audio(&p, &opts(8000)).unwrap().samples,
        vec![2000.0 / 32768.0, -2000.0 / 32768.0]
    );
    let mut o = opts(8000);
    o.channel = ChannelSelect::Channel(1);
    assert_eq!(
        read_audio(&p, &o).unwrap().samples,
        vec![3000.0 / 32768.0, 0.0]
    );
    o.channel = ChannelSelect::Channel(5);
    assert_format_err(read_audio(&p, &o), &p, &["channel 5"]);

    // 4-byte little endian.
    let data: Vec<u8> = [i32::MIN, 1 << 30]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = write(
        &dir,
        "i32.sph",
        &sphere(
            &[
                "sample_count -i 2",
                "sample_rate -i 8000",
                "sample_n_bytes -i 4",
                "sample_byte_format -s4 0123",
            ],
            &data,
        ),
    );
    assert_eq!(
        read_audio(&p, &opts(8000)).unwrap().samples,
        vec![-1.0, 0.5]
    );
}

#[test]
fn sphere_refuses_compressed_and_companded() {
    let dir = TempDir::new().unwrap();
    let data = pcm16(&[1, 2, 3, 4], false);
    let base = [
        "sample_count -i 4",
        "sample_rate -i 16000",
        "sample_n_bytes -i 2",
        "sample_byte_format -s2 01",
    ];
    for (coding, needle) in [
        ("sample_coding -s26 pcm,embedded-shorten-v2.00", "shorten"),
        ("sample_coding -s25 pcm,embedded-wavpack-v1.0", "wavpack"),
        ("sample_coding -s4 ulaw", "ulaw"),
        ("sample_coding -s4 alaw", "alaw"),
    ] {
        let mut fields = base.to_vec();
        fields.push(coding);
        let p = write(&dir, &format!("{needle}.sph"), &sphere(&fields, &data));
        assert_format_err(read_audio(&p, &opts(16000)), &p, &[needle, "not supported"]);
    }
    let mut fields = base.to_vec();
    fields[3] = "sample_byte_format -s12 shortpack-v0";
    let p = write(&dir, "sp.sph", &sphere(&fields, &data));
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["shortpack"]);
}

#[test]
fn sphere_refuses_headers_that_disagree_with_the_file() {
    let dir = TempDir::new().unwrap();
    let data = pcm16(&[1, 2, 3, 4], false);
    let with_count = |count: &str| {
        sphere(
            &[
                count,
                "sample_rate -i 16000",
                "sample_n_bytes -i 2",
                "sample_byte_format -s2 01",
            ],
            &data,
        )
    };
    // A header claiming 2^40 samples: refused from the file size, nothing allocated.
    let p = write(
        &dir,
        "huge.sph",
        &with_count("sample_count -i 1099511627776"),
    );
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["truncated", "1099511627776"],
    );
    // Fewer samples than the data holds.
    let p = write(&dir, "short.sph", &with_count("sample_count -i 3"));
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["declares 3 samples", "8 bytes"],
    );
    // More samples than present: a truncated file.
    let p = write(&dir, "trunc.sph", &with_count("sample_count -i 5"));
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["truncated"]);
    let full = std::fs::read(fixture("mono16.sph")).unwrap();
    let p = write(&dir, "cut.sph", &full[..2000]);
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["truncated", "1600 samples"],
    );
    // A header size larger than the file.
    let p = write(&dir, "hdr.sph", &full[..600]);
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["truncated", "1024 bytes"],
    );
    // Negative count, bad numbers, unknown byte order, no end_head, no rate.
    let p = write(&dir, "neg.sph", &with_count("sample_count -i -4"));
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["negative"]);
    let p = write(&dir, "nan.sph", &with_count("sample_count -i four"));
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["sample_count", "not an integer"],
    );
    let p = write(
        &dir,
        "order.sph",
        &sphere(
            &[
                "sample_count -i 4",
                "sample_rate -i 16000",
                "sample_n_bytes -i 2",
                "sample_byte_format -s2 11",
            ],
            &data,
        ),
    );
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["sample_byte_format", "\"11\""],
    );
    let p = write(
        &dir,
        "norate.sph",
        &sphere(
            &[
                "sample_count -i 4",
                "sample_n_bytes -i 2",
                "sample_byte_format -s2 01",
            ],
            &data,
        ),
    );
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["no sample_rate"]);
    let mut no_end = b"NIST_1A\n   1024\nsample_count -i 4\n".to_vec();
    no_end.resize(1024, b' ');
    no_end.extend_from_slice(&data);
    let p = write(&dir, "noend.sph", &no_end);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["end_head"]);
    let mut bad_size = b"NIST_1A\n   abcd\n".to_vec();
    bad_size.resize(1100, b' ');
    let p = write(&dir, "badsize.sph", &bad_size);
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["header size", "not a number"],
    );
    // 1-byte samples are not PCM we read.
    let p = write(
        &dir,
        "one.sph",
        &sphere(
            &[
                "sample_count -i 8",
                "sample_rate -i 16000",
                "sample_n_bytes -i 1",
                "sample_byte_format -s1 1",
            ],
            &data,
        ),
    );
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["unsupported encoding", "sample_n_bytes 1"],
    );
}

#[test]
fn sphere_without_sample_count_uses_the_data_size() {
    let dir = TempDir::new().unwrap();
    let p = write(
        &dir,
        "nc.sph",
        &sphere(
            &[
                "sample_rate -i 16000",
                "sample_n_bytes -i 2",
                "sample_byte_format -s2 01",
            ],
            &pcm16(&[5, 6, 7], false),
        ),
    );
    assert_eq!(
        read_audio(&p, &opts(16000)).unwrap().samples,
        vec![5.0 / 32768.0, 6.0 / 32768.0, 7.0 / 32768.0]
    );
}

// ---------------------------------------------------------------------------------------------
// FLAC

#[test]
fn flac_16bit_mono_matches_the_signal() {
    let w = read_audio(&fixture("mono16.flac"), &opts(16000)).unwrap();
    let want: Vec<f32> = fixture_x().iter().map(|&v| v as f32 / 32768.0).collect();
    assert_eq!(w.sample_rate, 16000);
    assert_eq!(w.samples, want);
}

#[test]
fn flac_24bit_is_scaled_by_its_own_depth() {
    let w = read_audio(&fixture("mono24.flac"), &opts(16000)).unwrap();
    let want: Vec<f32> = fixture_x().iter().map(|&v| v as f32 / 32768.0).collect();
    assert_eq!(w.samples, want);
}

#[test]
fn flac_stereo_downmix_and_channel_choice() {
    let p = fixture("stereo16.flac");
    let (x, y) = (fixture_x(), fixture_y());
    let mean = read_audio(&p, &opts(16000)).unwrap();
    assert_eq!(mean.samples.len(), 1600);
    for i in 0..1600 {
        let want = (x[i] + y[i]) as f32 / 65536.0;
        assert!(
            (mean.samples[i] - want).abs() < 1e-6,
            "frame {i}: {} vs {want}",
            mean.samples[i]
        );
    }
    let mut o = opts(16000);
    o.channel = ChannelSelect::Channel(1);
    let right = read_audio(&p, &o).unwrap();
    assert_eq!(
        right.samples,
        y.iter().map(|&v| v as f32 / 32768.0).collect::<Vec<_>>()
    );
    o.channel = ChannelSelect::Channel(2);
    assert_format_err(read_audio(&p, &o), &p, &["channel 2", "2 channel"]);
}

#[test]
fn flac_truncated_and_corrupt_are_refused() {
    let dir = TempDir::new().unwrap();
    let full = std::fs::read(fixture("mono16.flac")).unwrap();
    let p = write(&dir, "cut.flac", &full[..full.len() / 2]);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["truncated"]);
    let p = write(&dir, "head.flac", &full[..30]);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["FLAC"]);
    // STREAMINFO's MD5 of the samples (bytes 26..42) no longer matching what decodes.
    let mut bad = full.clone();
    bad[30] ^= 0xFF;
    let p = write(&dir, "md5.flac", &bad);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["MD5"]);
    // An all-zero MD5 means the encoder did not compute one: nothing to verify, the file is fine.
    let mut unset = full.clone();
    unset[26..42].fill(0);
    let p = write(&dir, "nomd5.flac", &unset);
    assert_eq!(read_audio(&p, &opts(16000)).unwrap().samples.len(), 1600);
    // One damaged frame in the middle: the reader skips it, the gap is found.
    let mut bad = full.clone();
    bad[full.len() / 2] ^= 0x01;
    let p = write(&dir, "bit.flac", &bad);
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["samples", "missing or damaged"],
    );
    // Damage anywhere in the audio frames: a CRC failure, a lost frame or an MD5 mismatch, never a
    // quiet success.
    for at in [full.len() / 3, full.len() / 2, full.len() - 40] {
        let mut bad = full.clone();
        for b in &mut bad[at..at + 8] {
            *b ^= 0x5A;
        }
        let p = write(&dir, &format!("bad{at}.flac"), &bad);
        assert!(
            read_audio(&p, &opts(16000)).is_err(),
            "damage at byte {at} went unnoticed"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Resampling

#[test]
fn resample_8k_to_16k_keeps_length_and_frequency() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("8k.wav");
    let n = 8000;
    let x: Vec<i32> = sine(440.0, 8000, n, 16000.0)
        .iter()
        .map(|v| v.round() as i32)
        .collect();
    write_wav_int(&p, spec(1, 8000, 16, SampleFormat::Int), &x);
    let w = read_audio(&p, &opts(16000)).unwrap();
    assert_eq!(w.sample_rate, 16000);
    assert_eq!(w.samples.len(), 2 * n);
    // Energy stays at 440 Hz, with its amplitude (16000 / 32768), and no image at 8000 - 440 Hz.
    let amp = amplitude_at(&w.samples[1000..15000], 16000, 440.0);
    assert!(
        (amp - 16000.0 / 32768.0).abs() < 2e-3,
        "amplitude at 440 Hz: {amp}"
    );
    let image = amplitude_at(&w.samples[1000..15000], 16000, 7560.0);
    assert!(image < 1e-3, "image at 7560 Hz: {image}");
    // Sample by sample: the filter delay is removed, output i lies at time i / 16000.
    let ideal = sine(440.0, 16000, 2 * n, 16000.0 / 32768.0);
    let worst = (1000..15000)
        .map(|i| (w.samples[i] as f64 - ideal[i]).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 2e-3,
        "largest deviation from the ideal sine: {worst}"
    );
}

#[test]
fn resample_44k1_to_16k_removes_what_16k_cannot_hold() {
    let rate = 44100;
    let n = 44100;
    let tone: Vec<f32> = sine(1000.0, rate, n, 0.5)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let high: Vec<f32> = sine(10000.0, rate, n, 0.5)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let out = resample(&tone, rate, 16000).unwrap();
    assert_eq!(out.len(), 16000);
    let amp = amplitude_at(&out[2000..14000], 16000, 1000.0);
    assert!((amp - 0.5).abs() < 2e-3, "1 kHz amplitude {amp}");
    // Sample by sample, also for rates whose block lengths would be odd (441 : 160 and 441 : 320),
    // where a half-sample delay error would show as a phase shift.
    for (from, f) in [(44100, 1000.0), (22050, 7000.0)] {
        let x: Vec<f32> = sine(f, from, from as usize, 0.5)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let y = resample(&x, from, 16000).unwrap();
        let ideal = sine(f, 16000, y.len(), 0.5);
        let worst = (1600..14400)
            .map(|i| (y[i] as f64 - ideal[i]).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-4,
            "{from} Hz -> 16 kHz, {f} Hz tone: deviation {worst}"
        );
    }
    // 10 kHz is above the new Nyquist frequency (8 kHz): filtered out, not aliased to 6 kHz.
    let out = resample(&high, rate, 16000).unwrap();
    assert!(
        rms(&out[2000..14000]) < 1e-3,
        "10 kHz leaked: rms {}",
        rms(&out[2000..14000])
    );
}

#[test]
fn resample_lengths_and_equal_rates() {
    let x: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.01).sin()).collect();
    assert_eq!(resample(&x, 16000, 8000).unwrap().len(), 501); // ceil(1001 / 2)
    assert_eq!(resample(&x, 22050, 16000).unwrap().len(), 727); // ceil(1001 * 16000 / 22050)
    assert_eq!(resample(&x, 16000, 16000).unwrap(), x);
    assert_eq!(resample(&[], 8000, 16000).unwrap(), Vec::<f32>::new());
    assert!(resample(&x, 0, 16000).is_err());
}

#[test]
fn other_rate_is_refused_without_resampling() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("8k.wav");
    write_wav_int(&p, spec(1, 8000, 16, SampleFormat::Int), &[1, 2, 3, 4]);
    assert_format_err(
        read_audio(&p, &no_resample(16000)),
        &p,
        &["8000 Hz", "16000 Hz", "resampling"],
    );
    // The same rate needs no resampling.
    assert_eq!(read_audio(&p, &no_resample(8000)).unwrap().samples.len(), 4);
    assert_format_err(
        read_audio(&fixture("mono16.flac"), &no_resample(8000)),
        &fixture("mono16.flac"),
        &["16000 Hz"],
    );
}

// ---------------------------------------------------------------------------------------------
// Segments

fn ramp_wav(dir: &TempDir, name: &str, rate: u32, n: i32) -> (PathBuf, Vec<f32>) {
    let p = dir.path().join(name);
    let vals: Vec<i32> = (0..n).map(|i| i % 30000 - 15000).collect();
    write_wav_int(&p, spec(1, rate, 16, SampleFormat::Int), &vals);
    (p, vals.iter().map(|&v| v as f32 / 32768.0).collect())
}

#[test]
fn segments_cut_at_the_native_rate() {
    let dir = TempDir::new().unwrap();
    let (p, all) = ramp_wav(&dir, "r.wav", 16000, 32000);
    let o = opts(16000);
    assert_eq!(
        read_audio_segment(&p, 0.5, 1.0, &o).unwrap().samples,
        all[8000..16000]
    );
    assert_eq!(
        read_audio_segment(&p, 1.25, -1.0, &o).unwrap().samples,
        all[20000..]
    );
    assert_eq!(read_audio_segment(&p, 0.0, 2.0, &o).unwrap().samples, all);
    // Up to 0.5 s past the end is truncated to the end (Kaldi's extract-segments).
    assert_eq!(
        read_audio_segment(&p, 1.5, 2.4, &o).unwrap().samples,
        all[24000..]
    );

    // Stereo 8 kHz, channel 1, resampled to 16 kHz: cut first (0.25 s = 2000 samples), then
    // resampled.
    let p2 = dir.path().join("s8k.wav");
    let flat: Vec<i32> = (0..8000).flat_map(|i| [0, (i % 100) * 100]).collect();
    write_wav_int(&p2, spec(2, 8000, 16, SampleFormat::Int), &flat);
    let mut o2 = opts(16000);
    o2.channel = ChannelSelect::Channel(1);
    let seg = read_audio_segment(&p2, 0.5, 0.75, &o2).unwrap();
    assert_eq!((seg.samples.len(), seg.sample_rate), (4000, 16000));
    let whole = read_audio(&p2, &o2).unwrap();
    assert_eq!(whole.samples.len(), 16000);
}

#[test]
fn segments_of_sphere_and_flac_equal_slices_of_the_whole() {
    for name in ["mono16.sph", "mono16.flac", "stereo16.flac"] {
        let p = fixture(name);
        let whole = read_audio(&p, &opts(16000)).unwrap().samples;
        let seg = read_audio_segment(&p, 0.025, 0.05, &opts(16000))
            .unwrap()
            .samples;
        assert_eq!(seg, whole[400..800], "{name}");
        let tail = read_audio_segment(&p, 0.075, -1.0, &opts(16000))
            .unwrap()
            .samples;
        assert_eq!(tail, whole[1200..], "{name}");
        assert_format_err(
            read_audio_segment(&p, 0.2, 0.3, &opts(16000)),
            &p,
            &["outside the audio"],
        );
    }
}

#[test]
fn segments_outside_the_audio_are_refused() {
    let dir = TempDir::new().unwrap();
    let (p, _) = ramp_wav(&dir, "r.wav", 16000, 16000); // 1 s
    let o = opts(16000);
    assert_format_err(
        read_audio_segment(&p, 1.0, 2.0, &o),
        &p,
        &["starts at 1 s", "outside the audio"],
    );
    assert_format_err(
        read_audio_segment(&p, 5.0, -1.0, &o),
        &p,
        &["outside the audio"],
    );
    assert_format_err(read_audio_segment(&p, 0.5, 1.6, &o), &p, &["past the end"]);
    assert_format_err(
        read_audio_segment(&p, 0.5, 0.5, &o),
        &p,
        &["not after the start"],
    );
    assert_format_err(
        read_audio_segment(&p, 0.7, 0.2, &o),
        &p,
        &["not after the start"],
    );
    assert_format_err(
        read_audio_segment(&p, -0.1, 0.2, &o),
        &p,
        &["start must be >= 0"],
    );
    assert_format_err(read_audio_segment(&p, f64::NAN, 0.2, &o), &p, &["finite"]);
    // Shorter than one sample.
    assert_format_err(
        read_audio_segment(&p, 0.5, 0.50001, &o),
        &p,
        &["no samples"],
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn missing_and_empty_files() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("nope.wav");
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["cannot open"]);
    let p = write(&dir, "empty.wav", b"");
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["empty file"]);
    let p = write(&dir, "tiny.wav", b"RIFF\x10\0");
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["truncated"]);
}

#[test]
fn garbage_and_other_formats_are_refused() {
    let dir = TempDir::new().unwrap();
    let p = write(&dir, "junk.wav", b"this is not audio at all, just text\n");
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["not a WAV, NIST SPHERE or FLAC file", "74 68 69 73"],
    );
    let p = write(&dir, "avi.wav", b"RIFF\x20\0\0\0AVI LIST\0\0\0\0");
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["not WAVE", "AVI "]);
    let p = write(&dir, "id3.flac", b"ID3\x04\0\0\0\0\0\0garbage");
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["ID3"]);
    // A RIFF/WAVE header followed by garbage.
    let mut v = b"RIFF\x40\0\0\0WAVEfmt \x10\0\0\0".to_vec();
    v.extend_from_slice(&[0xAB; 40]);
    let p = write(&dir, "garbled.wav", &v);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["WAV"]);
    // No data chunk at all.
    let mut v = raw_wav(&fmt16(1, 1, 16000, 16, 2), &[], None);
    v.truncate(v.len() - 8);
    let p = write(&dir, "nodata.wav", &v);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["WAV header"]);
}

#[test]
fn truncated_wav_is_refused() {
    let dir = TempDir::new().unwrap();
    let (p, _) = ramp_wav(&dir, "full.wav", 16000, 16000);
    let bytes = std::fs::read(&p).unwrap();
    let cut = write(&dir, "cut.wav", &bytes[..bytes.len() - 1001]);
    assert_format_err(
        read_audio(&cut, &opts(16000)),
        &cut,
        &["truncated", "32000 bytes", "16000 frames"],
    );
    // Even a segment in the part that is present: the file is damaged.
    assert_format_err(
        read_audio_segment(&cut, 0.0, 0.1, &opts(16000)),
        &cut,
        &["truncated"],
    );
    // A data chunk claiming 4 GiB.
    let p = write(
        &dir,
        "huge.wav",
        &raw_wav(&fmt16(1, 1, 16000, 16, 2), &[0, 0, 1, 0], Some(0xFFFF_FFFE)),
    );
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["truncated", "4294967294 bytes"],
    );
    // Cut inside the header.
    let p = write(&dir, "hdr.wav", &bytes[..30]);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["WAV header"]);
}

#[test]
fn unsupported_wav_encodings_are_named() {
    let dir = TempDir::new().unwrap();
    let data = [0x55u8; 16];
    // A-law and mu-law: 8-bit companded, format tags 6 and 7 (18-byte WAVEFORMATEX).
    for (tag, name) in [(6u16, "A-law"), (7, "mu-law")] {
        let mut fmt = fmt16(tag, 1, 8000, 8, 1);
        fmt.extend_from_slice(&0u16.to_le_bytes());
        let p = write(&dir, &format!("{tag}.wav"), &raw_wav(&fmt, &data, None));
        assert_format_err(
            read_audio(&p, &opts(8000)),
            &p,
            &["unsupported encoding", name],
        );
    }
    // 12-bit PCM in 2-byte containers.
    let p = write(
        &dir,
        "12.wav",
        &raw_wav(&fmt16(1, 1, 16000, 12, 2), &data, None),
    );
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["unsupported encoding", "12-bit PCM"],
    );
    // 12 valid bits declared in WAVE_FORMAT_EXTENSIBLE.
    let p = write(
        &dir,
        "12x.wav",
        &raw_wav(&extensible_fmt(1, 16000, 16, 12, true), &data, None),
    );
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["unsupported encoding", "12-bit PCM"],
    );
    // 64-bit float.
    let p = write(
        &dir,
        "f64.wav",
        &raw_wav(&fmt16(3, 1, 16000, 64, 8), &data, None),
    );
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["unsupported encoding", "64-bit float"],
    );
    // IMA ADPCM.
    let mut fmt = fmt16(0x11, 1, 16000, 4, 256);
    fmt.extend_from_slice(&[2, 0, 0xF9, 0x01]);
    let p = write(&dir, "ima.wav", &raw_wav(&fmt, &data, None));
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["unsupported encoding", "IMA ADPCM"],
    );
}

#[test]
fn zero_length_audio_has_no_samples() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("z.wav");
    write_wav_int(&p, spec(1, 16000, 16, SampleFormat::Int), &[]);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["no samples"]);
    assert_format_err(
        read_audio_segment(&p, 0.0, 1.0, &opts(16000)),
        &p,
        &["no samples"],
    );
    let p = write(
        &dir,
        "z.sph",
        &sphere(
            &[
                "sample_count -i 0",
                "sample_rate -i 16000",
                "sample_n_bytes -i 2",
                "sample_byte_format -s2 01",
            ],
            &[],
        ),
    );
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["no samples"]);
    // Also when the file would be resampled.
    let p = dir.path().join("z8.wav");
    write_wav_int(&p, spec(2, 8000, 16, SampleFormat::Int), &[]);
    assert_format_err(read_audio(&p, &opts(16000)), &p, &["no samples"]);
}

#[test]
fn nan_and_infinite_float_samples_are_refused() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("nan.wav");
    // Stereo: frame 3, channel 1 is the first bad value.
    let mut vals = vec![0.1f32; 12];
    vals[7] = f32::NAN;
    vals[9] = f32::INFINITY;
    write_wav_f32(&p, spec(2, 16000, 32, SampleFormat::Float), &vals);
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["sample 3 (channel 1) is NaN"],
    );
    // Picking the other channel does not hide it: the file is damaged.
    let mut o = opts(16000);
    o.channel = ChannelSelect::Channel(0);
    assert_format_err(read_audio(&p, &o), &p, &["NaN"]);
    let p = dir.path().join("inf.wav");
    write_wav_f32(
        &p,
        spec(1, 16000, 32, SampleFormat::Float),
        &[0.0, 0.5, f32::NEG_INFINITY],
    );
    assert_format_err(
        read_audio(&p, &opts(16000)),
        &p,
        &["sample 2 (channel 0) is infinite"],
    );
    // In a segment the index is still counted from the start of the file.
    let p = dir.path().join("late.wav");
    let mut vals = vec![0.0f32; 1000];
    vals[700] = f32::NAN;
    write_wav_f32(&p, spec(1, 1000, 32, SampleFormat::Float), &vals);
    assert_format_err(
        read_audio_segment(&p, 0.5, 0.9, &opts(1000)),
        &p,
        &["sample 700 (channel 0) is NaN"],
    );
    assert_eq!(
        read_audio_segment(&p, 0.0, 0.5, &opts(1000))
            .unwrap()
            .samples
            .len(),
        500
    );
}

#[test]
fn channel_out_of_range_and_zero_rate() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("m.wav");
    write_wav_int(&p, spec(1, 16000, 16, SampleFormat::Int), &[1, 2, 3]);
    let mut o = opts(16000);
    o.channel = ChannelSelect::Channel(1);
    assert_format_err(read_audio(&p, &o), &p, &["channel 1", "1 channel"]);
    assert!(matches!(read_audio(&p, &opts(0)), Err(Error::Config(_))));
}

#[test]
fn default_options_are_16k_resample_downmix() {
    let o = AudioOptions::default();
    assert_eq!(
        (o.sample_rate, o.resample, o.channel),
        (16000, true, ChannelSelect::Downmix)
    );
    let w = Waveform {
        samples: vec![0.0; 8000],
        sample_rate: 16000,
    };
    assert_eq!(w.duration_s(), 0.5);
}
