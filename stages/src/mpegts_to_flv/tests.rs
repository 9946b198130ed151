//! The stage on transport streams ffmpeg makes, joined by `mpegts-timeline` first, as the
//! `rtmp` sink runs them; the FLV is checked by ffprobe and ffmpeg's decoder.

use std::process::Command;

use bytes::Bytes;

use streampub_core::plugin::StageItem;

use super::*;
use crate::formats::flv::{read_file_header, TagHeader, TagKind, TAG_HEADER_LEN};
use crate::mpegts_timeline::MpegtsTimelineStage;
use crate::stage_harness::{feed_damaged_copies, ffmpeg_media, joined, run_stage};
use streampub_core::testing::fragment;

/// One second of H.264 with B-frames and AAC, as ffmpeg's MPEG-TS muxer writes it.
fn b_frame_media() -> Vec<u8> {
    ffmpeg_media("mpegts", &["-profile:v", "main", "-bf", "2"])
}

/// `files` joined by `mpegts-timeline`, then converted, in chunks of `split` bytes: the
/// joined transport stream and the FLV.
fn join_and_convert(files: &[Vec<u8>], split: usize) -> (Vec<u8>, Vec<u8>) {
    let mut timeline = MpegtsTimelineStage::default();
    let mut stage = MpegtsToFlvStage::default();
    let (mut transport_stream, mut flv) = (Vec::new(), Vec::new());
    for (index, file) in files.iter().enumerate() {
        let info = fragment(index as u64 + 1, &format!("batch-{index}.ts"));
        let (items, result) = run_stage(&mut timeline, &info, file, &[split]);
        result.unwrap();
        let joined_file = joined(&items);
        let (items, result) = run_stage(&mut stage, &info, &joined_file, &[split]);
        result.unwrap();
        transport_stream.extend(joined_file);
        flv.extend(joined(&items));
    }
    (transport_stream, flv)
}

fn convert(files: &[Vec<u8>], split: usize) -> Vec<u8> {
    join_and_convert(files, split).1
}

/// The (kind, timestamp, first data byte) of every tag.
fn tags(flv: &[u8]) -> Vec<(TagKind, u32, u8)> {
    let offset = read_file_header(flv[..9].try_into().unwrap()).unwrap() as usize;
    let mut at = offset + 4;
    let mut tags = Vec::new();
    while at < flv.len() {
        let header = TagHeader::parse(flv[at..at + TAG_HEADER_LEN].try_into().unwrap()).unwrap();
        tags.push((header.kind, header.timestamp, flv[at + TAG_HEADER_LEN]));
        at += TAG_HEADER_LEN + header.data_size as usize + 4;
    }
    assert_eq!(at, flv.len(), "the last tag ends where the stream does");
    tags
}

/// ffprobe's packets of a file: (stream kind, dts in ms, pts in ms; ffprobe writes the
/// presentation time first).
fn packets(path: &std::path::Path) -> Vec<(String, i64, i64)> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,dts_time,pts_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let ms = |field: &str| (field.parse::<f64>().unwrap() * 1000.0).round() as i64;
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[0].to_owned(), ms(fields[2]), ms(fields[1]))
        })
        .collect()
}

/// The MD5 of every decoded frame of `path`'s `stream` (`v` or `a`).
fn decoded(path: &std::path::Path, stream: &str) -> Vec<String> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", &format!("0:{stream}"), "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(
        output.stderr.is_empty(),
        "decoder errors: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

#[test]
fn transport_streams_become_one_flv_session_that_decodes_to_the_same_frames() {
    let file = b_frame_media();
    let directory = tempfile::tempdir().unwrap();
    let (input, joined_input, output) = (
        directory.path().join("one.ts"),
        directory.path().join("joined.ts"),
        directory.path().join("joined.flv"),
    );
    std::fs::write(&input, &file).unwrap();
    let (transport_stream, flv) = join_and_convert(&[file.clone(), file.clone()], 4096);
    std::fs::write(&joined_input, transport_stream).unwrap();
    std::fs::write(&output, flv).unwrap();

    // Every frame and audio packet of the joined stream, at its decode and presentation time
    // (FLV's count from the first tag; each rounded to the millisecond on its own).
    let (expected, converted) = (packets(&joined_input), packets(&output));
    for kind in ["video", "audio"] {
        let of_kind = |list: &[(String, i64, i64)]| -> Vec<(i64, i64)> {
            list.iter()
                .filter(|packet| packet.0 == kind)
                .map(|packet| (packet.1, packet.2))
                .collect()
        };
        let (expected, converted) = (of_kind(&expected), of_kind(&converted));
        assert_eq!(expected.len(), converted.len(), "{kind}");
        let shift = expected[0].0 - converted[0].0;
        for (want, got) in expected.iter().zip(&converted) {
            assert!(
                (want.0 - shift - got.0).abs() <= 1,
                "{kind}: {want:?} {got:?}"
            );
            assert!(
                (want.1 - shift - got.1).abs() <= 1,
                "{kind}: {want:?} {got:?}"
            );
        }
    }
    let video: Vec<(i64, i64)> = converted
        .iter()
        .filter(|packet| packet.0 == "video")
        .map(|packet| (packet.1, packet.2))
        .collect();
    assert_eq!(video.len(), 50);
    // B-frames: presented after their decode time, in another order.
    assert!(video.iter().all(|(dts, pts)| pts >= dts));
    assert!(video.windows(2).any(|pair| pair[1].1 < pair[0].1));

    // Decoded, the same pictures as the input, twice, and no decoder error.
    let frames = decoded(&input, "v");
    assert_eq!(decoded(&output, "v"), [frames.clone(), frames].concat());
    assert_eq!(decoded(&output, "a").len(), 2 * decoded(&input, "a").len());
}

#[test]
fn tags_are_in_decode_order_after_the_headers_whatever_the_chunk_boundaries() {
    let file = b_frame_media();
    let flv = convert(&[file.clone(), file.clone()], 4096);
    for split in [1, 188, 1000] {
        assert_eq!(convert(&[file.clone(), file.clone()], split), flv);
    }
    let tags = tags(&flv);
    // onMetaData, then the AVC and the AAC sequence header, at 0.
    assert_eq!(tags[0].0, TagKind::Script);
    assert_eq!(tags[1], (TagKind::Video, 0, 0x17));
    assert_eq!(tags[2].0, TagKind::Audio);
    assert_eq!(tags[3].0, TagKind::Video, "the first frame is the keyframe");
    let timestamps: Vec<u32> = tags.iter().map(|tag| tag.1).collect();
    assert!(
        timestamps.windows(2).all(|pair| pair[0] <= pair[1]),
        "{timestamps:?}"
    );
}

#[test]
fn a_new_session_begins_with_its_headers_and_timestamps_from_zero() {
    let file = ffmpeg_media("mpegts", &[]);
    let mut timeline = MpegtsTimelineStage::default();
    let mut stage = MpegtsToFlvStage::default();
    let mut sessions = Vec::new();
    for sequence in 1..=2 {
        let info = fragment(sequence, "batch.ts");
        let (items, result) = run_stage(&mut timeline, &info, &file, &[4096]);
        result.unwrap();
        let (items, result) = run_stage(&mut stage, &info, &joined(&items), &[4096]);
        result.unwrap();
        sessions.push(tags(&joined(&items)));
        let mut output = StageOutput::default();
        stage.start_session(&mut output).unwrap();
        assert!(
            output.drain().next().is_none(),
            "nothing until the next tag"
        );
    }
    // The same tags (timestamps may round 1 ms apart: the second file starts at a fraction of
    // a millisecond), the headers first at 0.
    assert_eq!(sessions[0].len(), sessions[1].len());
    for session in &sessions {
        assert_eq!(session[0].0, TagKind::Script);
        assert_eq!(session[1], (TagKind::Video, 0, 0x17));
        assert_eq!((session[2].0, session[2].1), (TagKind::Audio, 0));
    }
}

#[test]
fn video_or_audio_flv_cannot_carry_fails_naming_the_stream_and_the_way_out() {
    let mpeg2 = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x180:rate=25",
        ])
        .args(["-t", "1", "-c:v", "mpeg2video", "-f", "mpegts", "pipe:1"])
        .output()
        .unwrap()
        .stdout;
    let mut timeline = MpegtsTimelineStage::default();
    let info = fragment(1, "batch-7.ts");
    let (items, result) = run_stage(&mut timeline, &info, &mpeg2, &[4096]);
    result.unwrap();
    let mut stage = MpegtsToFlvStage::default();
    let (items, result) = run_stage(&mut stage, &info, &joined(&items), &[4096]);
    let message = result.unwrap_err().message;
    assert!(message.contains("batch-7.ts"), "{message}");
    assert!(message.contains("0x02"), "{message}");
    assert!(message.contains("input_format: mp4"), "{message}");
    assert!(!items.iter().any(|item| matches!(item, StageItem::Chunk(_))));
}

#[test]
fn random_and_damaged_input_never_panics() {
    feed_damaged_copies::<MpegtsToFlvStage>(&ffmpeg_media("mpegts", &[]), 150);
}

#[test]
fn after_an_abort_the_tags_sent_again_are_interleaved_as_the_first_time() {
    use crate::formats::flv::tags::{Configuration, FlvCodec, Tag};
    let tag = |codec, ms| {
        let configuration = Configuration {
            codec,
            bytes: Bytes::from_static(b"config"),
        };
        Tag::frame(
            configuration,
            (ms, 0),
            true,
            0,
            Bytes::from_static(b"frame"),
        )
    };
    let mut conversion = conversion::Conversion::default();
    conversion.frame_interval = Some(3600);
    let mut writer = writing::FlvWriter::new();
    let mut output = StageOutput::default();
    // The first time, the fragment got 5 s in before it failed.
    writer.queue(tag(FlvCodec::Avc, 5000));
    writer.abort();
    writer.start_session();
    // Sent again from its start: video waits for the audio it is interleaved with.
    writer.queue(tag(FlvCodec::Avc, 0));
    writer.write([true, true], &conversion, false, &mut output);
    assert!(
        output.drain().next().is_none(),
        "nothing written before the audio came"
    );
    writer.queue(tag(FlvCodec::Aac, 0));
    writer.queue(tag(FlvCodec::Avc, 40));
    writer.write([true, true], &conversion, false, &mut output);
    let written = joined(&output.drain().collect::<Vec<_>>());
    assert!(!written.is_empty());
}

#[test]
fn what_came_between_files_is_written_before_the_next_file_begins() {
    let mut timeline = MpegtsTimelineStage::default();
    let info = fragment(1, "batch-0.ts");
    let (items, result) = run_stage(&mut timeline, &info, &ffmpeg_media("mpegts", &[]), &[4096]);
    result.unwrap();
    let stream = joined(&items);
    let (whole_file, result) = run_stage(&mut MpegtsToFlvStage::default(), &info, &stream, &[4096]);
    result.unwrap();

    // The same stream between files (as the filler comes), then a file begins.
    let mut stage = MpegtsToFlvStage::default();
    let mut output = StageOutput::default();
    stage
        .process_chunk(Bytes::from(stream), &mut output)
        .unwrap();
    stage
        .begin_fragment(&fragment(2, "batch-1.ts"), &mut output)
        .unwrap();
    let between: Vec<StageItem> = output.drain().collect();
    assert_eq!(
        joined(&between),
        joined(&whole_file),
        "all of it, before the file"
    );
    // The file fails: what was written before it stays written, nothing is held for it.
    stage.abort_fragment();
    let mut output = StageOutput::default();
    stage.end_fragment(&mut output).unwrap();
    assert!(output.drain().next().is_none());
}
