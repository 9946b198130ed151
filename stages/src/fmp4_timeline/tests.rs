//! Tests of the timeline stage on synthetic fragmented MP4 built here, so every field is known.

use std::time::Duration;

use bytes::Bytes;

use streampub_core::plugin::StageItem;

use super::*;
use crate::formats::mp4::boxes::{children, write_box, BoxHeader, Reader};
use crate::formats::mp4::FourCc;
use crate::stage_harness::{self, joined};

// ---- building fragmented MP4 -------------------------------------------------------------

#[derive(Clone, Copy)]
struct Track {
    id: u32,
    handler: &'static [u8; 4],
    timescale: u32,
    codec: &'static [u8],
    default_duration: u32,
}

const VIDEO: Track = Track {
    id: 1,
    handler: b"vide",
    timescale: 90_000,
    codec: b"avc1-config",
    default_duration: 3000,
};
const AUDIO: Track = Track {
    id: 2,
    handler: b"soun",
    timescale: 48_000,
    codec: b"mp4a-config",
    default_duration: 1024,
};

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = vec![version];
    payload.extend_from_slice(&flags.to_be_bytes()[1..]);
    payload.extend_from_slice(body);
    let mut output = Vec::new();
    write_box(&mut output, kind, &payload);
    output
}

fn container(kind: &[u8; 4], parts: &[Vec<u8>]) -> Vec<u8> {
    let mut output = Vec::new();
    write_box(&mut output, kind, &parts.concat());
    output
}

fn be(values: &[u32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_be_bytes())
        .collect()
}

/// A sample entry with `track.codec` as its decoder configuration: `avc1` 640x360 with an
/// `avcC`, or `Opus` stereo 48 kHz with a `dOps`, each with a `btrt` that differs every time
/// (bitrates are not the stream).
fn sample_entry(track: &Track) -> Vec<u8> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static BITRATE: AtomicU32 = AtomicU32::new(100_000);
    let bitrate = BITRATE.fetch_add(1, Ordering::Relaxed);
    let (kind, mut entry, configuration) = match track.handler {
        b"vide" => {
            let mut entry = vec![0; 6];
            entry.extend_from_slice(&[0, 1]);
            entry.extend_from_slice(&[0; 16]);
            entry.extend_from_slice(&be(&[(640 << 16) | 360, 0x0048_0000, 0x0048_0000, 0]));
            entry.extend_from_slice(&[0, 1]);
            entry.extend_from_slice(&[0; 32]);
            entry.extend_from_slice(&[0, 24, 0xff, 0xff]);
            (b"avc1", entry, b"avcC")
        }
        _ => {
            let mut entry = vec![0; 6];
            entry.extend_from_slice(&[0, 1]);
            entry.extend_from_slice(&[0; 8]);
            entry.extend_from_slice(&be(&[(2 << 16) | 16, 0, 48_000 << 16]));
            (b"Opus", entry, b"dOps")
        }
    };
    write_box(&mut entry, configuration, track.codec);
    write_box(&mut entry, b"btrt", &be(&[0, bitrate, bitrate]));
    let mut output = Vec::new();
    write_box(&mut output, kind, &entry);
    output
}

/// `ftyp` + `moov`; with `fragmented: false` the `mvex` is left out.
fn init_segment(tracks: &[Track], fragmented: bool) -> Vec<u8> {
    let mut ftyp = Vec::new();
    write_box(&mut ftyp, b"ftyp", b"iso5\0\0\0\x01iso5");
    let mut moov_parts = vec![full_box(b"mvhd", 0, 0, &[0; 96])];
    for track in tracks {
        let mut tkhd = be(&[0, 0, track.id]);
        tkhd.extend_from_slice(&[0; 68]);
        let mut mdhd = be(&[0, 0, track.timescale, 0]);
        mdhd.extend_from_slice(&[0; 4]);
        let mut hdlr = be(&[0]);
        hdlr.extend_from_slice(track.handler);
        hdlr.extend_from_slice(&[0; 13]);
        let mut stsd = be(&[1]);
        stsd.extend_from_slice(&sample_entry(track));
        let stbl = container(b"stbl", &[full_box(b"stsd", 0, 0, &stsd)]);
        let minf = container(b"minf", &[stbl]);
        let mdia = container(
            b"mdia",
            &[
                full_box(b"mdhd", 0, 0, &mdhd),
                full_box(b"hdlr", 0, 0, &hdlr),
                minf,
            ],
        );
        moov_parts.push(container(b"trak", &[full_box(b"tkhd", 0, 3, &tkhd), mdia]));
    }
    if fragmented {
        let trex: Vec<Vec<u8>> = tracks
            .iter()
            .map(|track| {
                full_box(
                    b"trex",
                    0,
                    0,
                    &be(&[track.id, 1, track.default_duration, 0, 0]),
                )
            })
            .collect();
        moov_parts.push(container(b"mvex", &trex));
    }
    [ftyp, container(b"moov", &moov_parts)].concat()
}

/// One `traf` to build.
#[derive(Clone)]
struct Traf {
    track: Track,
    /// `tfdt` version and value, or none.
    tfdt: Option<(u8, u64)>,
    /// Sample durations per `trun`; `None` for a run of that many samples with default durations.
    runs: Vec<Result<Vec<u32>, u32>>,
}

/// A `moof` + `mdat`. Each sample is 4 bytes: fragment marker, track, run, sample index, so a
/// data offset can be checked by the bytes it points at.
fn media_segment(marker: u8, sequence: u32, trafs: &[Traf]) -> Vec<u8> {
    let build = |data_offsets: &[u32]| {
        let mut mdat = Vec::new();
        let mut run_index = 0;
        let mut traf_boxes = Vec::new();
        for traf in trafs {
            let mut parts = vec![full_box(b"tfhd", 0, 0x02_0000, &be(&[traf.track.id]))];
            if let Some((version, value)) = traf.tfdt {
                let body = if version == 1 {
                    value.to_be_bytes().to_vec()
                } else {
                    be(&[value as u32])
                };
                parts.push(full_box(b"tfdt", version, 0, &body));
            }
            for (run, samples) in traf.runs.iter().enumerate() {
                let (flags, count, durations) = match samples {
                    Ok(durations) => (0x101, durations.len() as u32, durations.clone()),
                    Err(count) => (0x001, *count, Vec::new()),
                };
                let mut body = be(&[count, data_offsets.get(run_index).copied().unwrap_or(0)]);
                body.extend(be(&durations));
                parts.push(full_box(b"trun", 0, flags, &body));
                for sample in 0..count {
                    mdat.extend_from_slice(&[marker, traf.track.id as u8, run as u8, sample as u8]);
                }
                run_index += 1;
            }
            traf_boxes.push(container(b"traf", &parts));
        }
        let mut moof_parts = vec![full_box(b"mfhd", 0, 0, &be(&[sequence]))];
        moof_parts.extend(traf_boxes);
        (container(b"moof", &moof_parts), mdat)
    };
    let (moof, _) = build(&[]);
    // Data offsets count from the moof's start to each run's samples in the mdat payload.
    let mut offsets = Vec::new();
    let mut position = moof.len() as u32 + 8;
    for traf in trafs {
        for samples in &traf.runs {
            offsets.push(position);
            position += 4 * match samples {
                Ok(durations) => durations.len() as u32,
                Err(count) => *count,
            };
        }
    }
    let (moof, mdat) = build(&offsets);
    let mut output = moof;
    write_box(&mut output, b"mdat", &mdat);
    output
}

/// A typical upstream file: init, then two moof/mdat pairs with video and audio, tfdt from 0.
fn upstream_file(marker: u8) -> Vec<u8> {
    let video = |start: u64| Traf {
        track: VIDEO,
        tfdt: Some((0, start)),
        runs: vec![Ok(vec![3000, 3000, 3000])],
    };
    let audio = |start: u64| Traf {
        track: AUDIO,
        tfdt: Some((0, start)),
        runs: vec![Ok(vec![1024; 5])],
    };
    [
        init_segment(&[VIDEO, AUDIO], true),
        media_segment(marker, 1, &[video(0), audio(0)]),
        media_segment(marker, 2, &[video(9000), audio(5120)]),
    ]
    .concat()
}

/// `file` as ffmpeg writes it without `default_base_moof`: every `tfhd` holds an absolute
/// `base_data_offset` (here 16 bytes past its moof's position in the file) and the `trun` data
/// offsets count from there.
fn with_absolute_base(file: &[u8]) -> Vec<u8> {
    const PAST_MOOF: u64 = 16;
    let mut output = Vec::new();
    for entry in children(file) {
        let (kind, payload) = entry.unwrap();
        if kind != FourCc::MOOF {
            write_box(&mut output, &kind.0, payload);
            continue;
        }
        let trafs = children(payload)
            .filter(|entry| matches!(entry, Ok((kind, _)) if &kind.0 == b"traf"))
            .count() as i64;
        // Each tfhd grows by the 8-byte field.
        let shift = 8 * trafs - PAST_MOOF as i64;
        let base = output.len() as u64 + PAST_MOOF;
        let mut moof = Vec::new();
        for entry in children(payload) {
            let (kind, child) = entry.unwrap();
            if &kind.0 != b"traf" {
                write_box(&mut moof, &kind.0, child);
                continue;
            }
            let mut traf = Vec::new();
            for entry in children(child) {
                let (kind, body) = entry.unwrap();
                match &kind.0 {
                    b"tfhd" => {
                        let mut tfhd = vec![0, 0, 0, 1];
                        tfhd.extend_from_slice(&body[4..8]);
                        tfhd.extend_from_slice(&base.to_be_bytes());
                        tfhd.extend_from_slice(&body[8..]);
                        write_box(&mut traf, b"tfhd", &tfhd);
                    }
                    b"trun" => {
                        let mut trun = body.to_vec();
                        let offset = i32::from_be_bytes(trun[8..12].try_into().unwrap());
                        let moved = (i64::from(offset) + shift) as i32;
                        trun[8..12].copy_from_slice(&moved.to_be_bytes());
                        write_box(&mut traf, b"trun", &trun);
                    }
                    other => write_box(&mut traf, other, body),
                }
            }
            write_box(&mut moof, b"traf", &traf);
        }
        write_box(&mut output, b"moof", &moof);
    }
    output
}

// ---- running the stage and reading its output --------------------------------------------

fn info(sequence: u64) -> FragmentInfo {
    FragmentInfo {
        sequence,
        name: format!("batch-{sequence}.mp4"),
        length: None,
    }
}

/// Runs `file` through the stage as fragment `sequence`, in chunks of the given sizes
/// (cycled).
fn run_file(
    stage: &mut Fmp4TimelineStage,
    sequence: u64,
    file: &[u8],
    splits: &[usize],
) -> (Vec<StageItem>, Result<(), StageError>) {
    stage_harness::run_stage(stage, &info(sequence), file, splits)
}

/// One `traf` as the output has it.
#[derive(Debug, PartialEq)]
struct OutTraf {
    sequence: u32,
    track: u32,
    tfdt_version: u8,
    tfdt: u64,
    /// The first sample each trun's data offset points at.
    first_samples: Vec<[u8; 4]>,
}

/// Reads the output stream: top-level box types and every traf.
fn read_output(stream: &[u8]) -> (Vec<String>, Vec<OutTraf>) {
    let mut kinds = Vec::new();
    let mut trafs = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let header = BoxHeader::parse(&stream[at..]).unwrap();
        let size = header.size.unwrap() as usize;
        let payload = &stream[at + header.header_len..at + size];
        kinds.push(header.kind.to_string());
        if header.kind == FourCc::MOOF {
            let mut sequence = 0;
            for entry in children(payload) {
                let (kind, child) = entry.unwrap();
                if &kind.0 == b"mfhd" {
                    sequence = u32::from_be_bytes(child[4..8].try_into().unwrap());
                }
                if &kind.0 != b"traf" {
                    continue;
                }
                let mut out = OutTraf {
                    sequence,
                    track: 0,
                    tfdt_version: 9,
                    tfdt: 0,
                    first_samples: Vec::new(),
                };
                for entry in children(child) {
                    let (kind, body) = entry.unwrap();
                    let mut reader = Reader::new(body, "test");
                    let (version, flags) = reader.version_flags().unwrap();
                    match &kind.0 {
                        b"tfhd" => out.track = reader.u32().unwrap(),
                        b"tfdt" => {
                            out.tfdt_version = version;
                            out.tfdt = if version == 1 {
                                reader.u64().unwrap()
                            } else {
                                u64::from(reader.u32().unwrap())
                            };
                        }
                        b"trun" if flags & 1 != 0 => {
                            reader.u32().unwrap();
                            let offset = reader.u32().unwrap() as usize;
                            out.first_samples
                                .push(stream[at + offset..at + offset + 4].try_into().unwrap());
                        }
                        _ => {}
                    }
                }
                trafs.push(out);
            }
        }
        at += size;
    }
    (kinds, trafs)
}

// ---- the tests ----------------------------------------------------------------------------

#[test]
fn files_join_into_one_timeline() {
    let mut stage = Fmp4TimelineStage::default();
    let mut stream = Vec::new();
    let mut spans = Vec::new();
    for marker in 1..=3u8 {
        let (items, result) = run_file(
            &mut stage,
            u64::from(marker),
            &upstream_file(marker),
            &[usize::MAX],
        );
        result.unwrap();
        assert!(!items
            .iter()
            .any(|item| matches!(item, StageItem::NewSession { .. })));
        // The span is the fragment's last item: the sink learns it before the fragment ends.
        match items.last() {
            Some(StageItem::MediaSpan(span)) => spans.push((span.start, span.end)),
            other => panic!("no media span at the end of the fragment: {other:?}"),
        }
        stream.extend(joined(&items));
    }
    // Each file lasts as long as its longest track, 10 × 1024 / 48000 s of audio: the spans
    // are exact fractions, rounded down to the nanosecond.
    let nanos: Vec<(u128, u128)> = spans
        .iter()
        .map(|(start, end)| (start.as_nanos(), end.as_nanos()))
        .collect();
    assert_eq!(
        nanos,
        [
            (0, 213_333_333),
            (213_333_333, 426_666_666),
            (426_666_666, 640_000_000)
        ]
    );
    let (kinds, trafs) = read_output(&stream);
    assert_eq!(
        kinds.iter().filter(|kind| *kind == "moov").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|kind| *kind == "ftyp").count(), 1);
    assert_eq!(kinds.len(), 2 + 3 * 4);
    // Video lasts 0.2 s per file, audio 10 × 1024 / 48000 = 0.21333 s: files are 0.21333 s apart.
    let video: Vec<u64> = trafs
        .iter()
        .filter(|traf| traf.track == 1)
        .map(|traf| traf.tfdt)
        .collect();
    let audio: Vec<u64> = trafs
        .iter()
        .filter(|traf| traf.track == 2)
        .map(|traf| traf.tfdt)
        .collect();
    assert_eq!(video, [0, 9000, 19200, 28200, 38400, 47400]);
    assert_eq!(audio, [0, 5120, 10240, 15360, 20480, 25600]);
    let sequences: Vec<u32> = trafs.iter().map(|traf| traf.sequence).step_by(2).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    // Data offsets still point at each run's first sample.
    for (index, traf) in trafs.iter().enumerate() {
        let marker = (index / 4) as u8 + 1;
        assert_eq!(traf.first_samples, [[marker, traf.track as u8, 0, 0]]);
    }
}

#[test]
fn absolute_base_data_offsets_are_made_relative_to_their_moof() {
    let mut stage = Fmp4TimelineStage::default();
    let mut stream = Vec::new();
    for marker in 1..=2u8 {
        let file = with_absolute_base(&upstream_file(marker));
        let (items, result) = run_file(&mut stage, u64::from(marker), &file, &[7]);
        result.unwrap();
        stream.extend(joined(&items));
    }
    let (_, trafs) = read_output(&stream);
    assert_eq!(trafs.len(), 8);
    // Every run's data offset, counted from its moof in the joined stream, finds its samples.
    for (index, traf) in trafs.iter().enumerate() {
        let marker = (index / 4) as u8 + 1;
        assert_eq!(
            traf.first_samples,
            [[marker, traf.track as u8, 0, 0]],
            "traf {index}"
        );
    }
}

#[test]
fn a_restored_timeline_continues_without_a_second_init_segment() {
    let mut first = Fmp4TimelineStage::default();
    let mut stream = Vec::new();
    let (items, result) = run_file(&mut first, 1, &upstream_file(1), &[usize::MAX]);
    result.unwrap();
    stream.extend(joined(&items));
    // As the pipeline's checkpoint does: through JSON.
    let saved = serde_json::to_string(&first.checkpoint().unwrap()).unwrap();

    let mut restarted = Fmp4TimelineStage::default();
    restarted
        .restore(serde_json::from_str(&saved).unwrap())
        .unwrap();
    for marker in 2..=3u8 {
        let (items, result) = run_file(
            &mut restarted,
            u64::from(marker),
            &upstream_file(marker),
            &[usize::MAX],
        );
        result.unwrap();
        stream.extend(joined(&items));
    }
    let (kinds, trafs) = read_output(&stream);
    assert_eq!(kinds.iter().filter(|kind| *kind == "moov").count(), 1);
    let video: Vec<u64> = trafs
        .iter()
        .filter(|traf| traf.track == 1)
        .map(|traf| traf.tfdt)
        .collect();
    assert_eq!(video, [0, 9000, 19200, 28200, 38400, 47400]);
    let sequences: Vec<u32> = trafs.iter().map(|traf| traf.sequence).step_by(2).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);

    let unreadable = Fmp4TimelineStage::default().restore(serde_json::json!({"init": "0102"}));
    assert!(unreadable.is_err());
}

#[test]
fn output_is_identical_whatever_the_chunk_boundaries() {
    let files: Vec<Vec<u8>> = (1..=3).map(upstream_file).collect();
    let reference: Vec<u8> = {
        let mut stage = Fmp4TimelineStage::default();
        files
            .iter()
            .enumerate()
            .flat_map(|(index, file)| {
                joined(&run_file(&mut stage, index as u64 + 1, file, &[usize::MAX]).0)
            })
            .collect()
    };
    let mut random = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let mut split_sets: Vec<Vec<usize>> =
        vec![vec![1], vec![2], vec![7], vec![8], vec![9], vec![4096]];
    for _ in 0..200 {
        split_sets.push((0..16).map(|_| (next() % 300) as usize + 1).collect());
    }
    for splits in split_sets {
        let mut stage = Fmp4TimelineStage::default();
        let output: Vec<u8> = files
            .iter()
            .enumerate()
            .flat_map(|(index, file)| {
                let (items, result) = run_file(&mut stage, index as u64 + 1, file, &splits);
                result.unwrap();
                joined(&items)
            })
            .collect();
        assert!(output == reference, "output differs with splits {splits:?}");
    }
}

#[test]
fn mdat_payload_passes_as_slices_of_the_input() {
    let file = upstream_file(1);
    let input = Bytes::from(file.clone());
    let mut stage = Fmp4TimelineStage::default();
    let mut output = StageOutput::default();
    stage.begin_fragment(&info(1), &mut output).unwrap();
    stage.process_chunk(input.clone(), &mut output).unwrap();
    stage.end_fragment(&mut output).unwrap();
    let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
    let sliced = output
        .drain()
        .filter(|item| matches!(item, StageItem::Chunk(chunk) if range.contains(&(chunk.as_ptr() as usize))))
        .count();
    assert_eq!(
        sliced, 2,
        "both mdat payloads are slices of the input, not copies"
    );
}

#[test]
fn video_only_audio_only_and_other_rates() {
    for (tracks, durations) in [
        (vec![VIDEO], vec![vec![3003u32; 30]]), // 29.97 fps
        (
            vec![Track {
                default_duration: 3600,
                ..VIDEO
            }],
            vec![vec![3600; 25]],
        ), // 25 fps
        (
            vec![Track {
                timescale: 60_000,
                default_duration: 1000,
                ..VIDEO
            }],
            vec![vec![1000; 60]],
        ), // 60 fps
        (
            vec![Track {
                timescale: 44_100,
                ..AUDIO
            }],
            vec![vec![1024; 43]],
        ), // 44.1 kHz
    ] {
        let file = |marker: u8| {
            let trafs: Vec<Traf> = tracks
                .iter()
                .zip(&durations)
                .map(|(track, durations)| Traf {
                    track: *track,
                    tfdt: Some((0, 0)),
                    runs: vec![Ok(durations.clone())],
                })
                .collect();
            [
                init_segment(&tracks, true),
                media_segment(marker, 1, &trafs),
            ]
            .concat()
        };
        let mut stage = Fmp4TimelineStage::default();
        let mut stream = Vec::new();
        for marker in 1..=3u8 {
            let (items, result) = run_file(&mut stage, u64::from(marker), &file(marker), &[1000]);
            result.unwrap();
            stream.extend(joined(&items));
        }
        let (_, trafs) = read_output(&stream);
        let per_file: u64 = durations[0]
            .iter()
            .map(|duration| u64::from(*duration))
            .sum();
        let starts: Vec<u64> = trafs.iter().map(|traf| traf.tfdt).collect();
        assert_eq!(
            starts,
            [0, per_file, 2 * per_file],
            "{:?}",
            tracks[0].handler
        );
    }
}

#[test]
fn missing_tfdt_is_added_and_several_runs_and_moofs_keep_their_offsets() {
    let file = |marker: u8| {
        let traf = |tfdt| Traf {
            track: VIDEO,
            tfdt,
            runs: vec![Err(2), Ok(vec![3000, 3000])],
        };
        [
            init_segment(&[VIDEO], true),
            media_segment(marker, 1, &[traf(None)]),
            media_segment(marker, 2, &[traf(Some((1, 12_000)))]),
        ]
        .concat()
    };
    let mut stage = Fmp4TimelineStage::default();
    let mut stream = Vec::new();
    for marker in 1..=2u8 {
        let (items, result) = run_file(&mut stage, u64::from(marker), &file(marker), &[5]);
        result.unwrap();
        stream.extend(joined(&items));
    }
    let (_, trafs) = read_output(&stream);
    // Each moof: 2 default (3000) + 2 explicit 3000 = 12000 ticks.
    let starts: Vec<u64> = trafs.iter().map(|traf| traf.tfdt).collect();
    assert_eq!(starts, [0, 12_000, 24_000, 36_000]);
    for (index, traf) in trafs.iter().enumerate() {
        let marker = index as u8 / 2 + 1;
        assert_eq!(
            traf.first_samples,
            [[marker, 1, 0, 0], [marker, 1, 1, 0]],
            "traf {index}"
        );
    }
}

#[test]
fn a_tfdt_that_outgrows_32_bits_becomes_version_1() {
    // Two samples of 0xC000_0000 ticks: the second file starts past u32::MAX.
    let long = |marker: u8| {
        let traf = Traf {
            track: VIDEO,
            tfdt: Some((0, 0)),
            runs: vec![Ok(vec![0xC000_0000, 0xC000_0000])],
        };
        [
            init_segment(&[VIDEO], true),
            media_segment(marker, 1, &[traf]),
        ]
        .concat()
    };
    let mut stage = Fmp4TimelineStage::default();
    let mut stream = Vec::new();
    for marker in 1..=2u8 {
        let (items, result) = run_file(&mut stage, u64::from(marker), &long(marker), &[3]);
        result.unwrap();
        stream.extend(joined(&items));
    }
    let (_, trafs) = read_output(&stream);
    assert_eq!((trafs[0].tfdt_version, trafs[0].tfdt), (0, 0));
    assert_eq!((trafs[1].tfdt_version, trafs[1].tfdt), (1, 0x1_8000_0000));
    assert_eq!(
        trafs[1].first_samples,
        [[2, 1, 0, 0]],
        "the trun data offset follows the 4 bytes the tfdt grew"
    );
}

#[test]
fn a_different_init_segment_starts_a_new_session_and_equal_ones_are_dropped() {
    let changed = Track {
        codec: b"avc1-other",
        ..VIDEO
    };
    let file = |track: Track, marker: u8| {
        let traf = Traf {
            track,
            tfdt: Some((0, 0)),
            runs: vec![Ok(vec![3000; 3])],
        };
        [
            init_segment(&[track], true),
            media_segment(marker, 1, &[traf]),
        ]
        .concat()
    };
    let mut stage = Fmp4TimelineStage::default();
    let (first, _) = run_file(&mut stage, 1, &file(VIDEO, 1), &[64]);
    let (second, _) = run_file(&mut stage, 2, &file(changed, 2), &[64]);
    let (third, _) = run_file(&mut stage, 3, &file(changed, 3), &[64]);
    assert!(!first
        .iter()
        .any(|item| matches!(item, StageItem::NewSession { .. })));
    let position = second
        .iter()
        .position(|item| matches!(item, StageItem::NewSession { .. }))
        .expect("a new session");
    let (kinds, _) = read_output(&joined(&second[position..]));
    assert_eq!(
        kinds[..2],
        ["ftyp".to_owned(), "moov".to_owned()],
        "the new init segment follows the request"
    );
    let (kinds, trafs) = read_output(&joined(&third));
    assert!(
        !kinds.contains(&"moov".to_owned()),
        "an equal init segment is dropped"
    );
    assert_eq!(
        trafs[0].tfdt, 18_000,
        "the timeline goes on across the change"
    );
}

#[test]
fn a_new_session_gets_the_init_segment_and_a_rewind_restores_the_timeline() {
    let mut stage = Fmp4TimelineStage::default();
    run_file(&mut stage, 1, &upstream_file(1), &[100])
        .1
        .unwrap();
    let (second, result) = run_file(&mut stage, 2, &upstream_file(2), &[100]);
    result.unwrap();

    stage.rewind(&info(2));
    let mut output = StageOutput::default();
    stage.start_session(&mut output).unwrap();
    let (kinds, _) = read_output(&joined(&output.drain().collect::<Vec<_>>()));
    assert_eq!(kinds, ["ftyp", "moov"]);
    let (again, result) = run_file(&mut stage, 2, &upstream_file(2), &[33]);
    result.unwrap();
    assert_eq!(
        read_output(&joined(&again)).1,
        read_output(&joined(&second)).1,
        "the resent file gets the same timeline"
    );
}

#[test]
fn corrupt_files_fail_naming_box_and_offset_and_the_next_file_goes_on() {
    let good = upstream_file(1);
    let init_len = init_segment(&[VIDEO, AUDIO], true).len();
    let mut absolute_offset = good.clone();
    // Set tfhd flags to "base data offset present" in the first traf, without the field.
    let tfhd = absolute_offset
        .windows(4)
        .position(|window| window == b"tfhd")
        .unwrap();
    absolute_offset[tfhd + 5..tfhd + 8].copy_from_slice(&[0, 0, 1]);
    let mut garbage = good[..init_len].to_vec();
    garbage.extend_from_slice(b"\x00\x00\x00\x10\x01\x02\x03\x04garbage!");
    let mut moof_without_mdat = good[..init_len].to_vec();
    let moof_len = u32::from_be_bytes(good[init_len..init_len + 4].try_into().unwrap()) as usize;
    moof_without_mdat.extend_from_slice(&good[init_len..init_len + moof_len]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() - 10].to_vec(),
            "bytes before the end of the box at offset",
        ),
        (
            "cut in moof",
            good[..init_len + 20].to_vec(),
            "inside box moof at offset",
        ),
        (
            "tfhd cut short",
            absolute_offset,
            "moof at offset 818: tfhd is cut short",
        ),
        ("garbage", garbage, "not a box"),
        ("moof without mdat", moof_without_mdat, "has no mdat"),
        (
            "not fragmented",
            [init_segment(&[VIDEO], false), good[init_len..].to_vec()].concat(),
            "not fragmented",
        ),
    ];
    for (what, file, expected) in cases {
        let mut stage = Fmp4TimelineStage::default();
        let (_, result) = run_file(&mut stage, 1, &file, &[17]);
        let error = result.expect_err(what);
        assert!(
            error.message.contains(expected),
            "{what}: {}",
            error.message
        );
        assert!(
            error.message.contains("batch-1.mp4"),
            "{what}: {}",
            error.message
        );
        // The next file continues.
        let (items, result) = run_file(&mut stage, 2, &upstream_file(2), &[64]);
        result.unwrap_or_else(|error| panic!("{what}: the next file failed: {error}"));
        assert!(!joined(&items).is_empty());
    }
}

#[test]
fn a_cut_mdat_is_completed_with_zeros() {
    let good = upstream_file(1);
    let mut stage = Fmp4TimelineStage::default();
    let (items, result) = run_file(&mut stage, 1, &good[..good.len() - 10], &[100]);
    assert!(result.is_err());
    let output = joined(&items);
    let (kinds, _) = read_output(&output);
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("mdat"),
        "the stream still parses box by box"
    );
    assert!(output.ends_with(&[0; 10]));
}

#[test]
fn random_and_damaged_input_never_panics() {
    stage_harness::feed_damaged_copies::<Fmp4TimelineStage>(&upstream_file(1), 3000);
}

#[test]
fn the_offset_does_not_drift_over_100000_files() {
    let mut offset = Seconds::default();
    for _ in 0..100_000 {
        // 30 s of 29.97 fps video (899 frames of 1001/30000 s) and of 44.1 kHz AAC.
        offset = offset.add_ticks(899 * 1001, 30_000);
    }
    assert_eq!(offset.in_ticks(30_000), 100_000 * 899 * 1001);
    assert_eq!(offset.in_ticks(90_000), 100_000 * 899 * 3003);
    let mut audio = Seconds::default();
    for _ in 0..100_000 {
        audio = audio.add_ticks(1292 * 1024, 44_100);
    }
    assert_eq!(audio.in_ticks(44_100), 100_000 * 1292 * 1024);
}

#[test]
fn filler_moves_the_next_file_to_where_it_ends() {
    let mut stage = Fmp4TimelineStage::default();
    let (_, result) = run_file(&mut stage, 1, &upstream_file(1), &[usize::MAX]);
    result.unwrap();
    let mut output = StageOutput::default();
    // Filler up to 1 s; a step that ends before the stream does changes nothing.
    stage.fill(Duration::from_millis(100), &mut output).unwrap();
    stage.fill(Duration::from_secs(1), &mut output).unwrap();
    assert_eq!(
        output.drain().count(),
        0,
        "the timeline emits no filler itself"
    );
    let (items, result) = run_file(&mut stage, 2, &upstream_file(2), &[usize::MAX]);
    result.unwrap();
    match items.last() {
        Some(StageItem::MediaSpan(span)) => {
            assert_eq!(
                (span.start.as_nanos(), span.end.as_nanos()),
                (1_000_000_000, 1_213_333_333)
            )
        }
        other => panic!("no media span: {other:?}"),
    }
    let (_, trafs) = read_output(&joined(&items));
    let starts: Vec<(u32, u64)> = trafs.iter().map(|traf| (traf.track, traf.tfdt)).collect();
    assert_eq!(starts, [(1, 90_000), (2, 48_000), (1, 99_000), (2, 53_120)]);
}
