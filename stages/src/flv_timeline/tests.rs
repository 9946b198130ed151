//! Tests of the FLV timeline stage on synthetic FLV files built here, so every field is known.

use streampub_core::plugin::StageItem;

use super::*;
use crate::formats::flv::{TagHeader, FILE_HEADER};
use crate::stage_harness::{self, joined};

// ---- building FLV ----------------------------------------------------------------------

fn tag(kind: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
    let size = data.len() as u32;
    let [_, s1, s2, s3] = size.to_be_bytes();
    let header = TagHeader::with_timestamp(&[kind, s1, s2, s3, 0, 0, 0, 0, 0, 0, 0], timestamp);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(&(size + 11).to_be_bytes());
    bytes
}

/// An upstream file: header, onMetaData, AVC and AAC sequence headers (`avc`, `aac`), then
/// five video frames 40 ms apart and ten audio packets 21 ms apart, interleaved by time,
/// their first data byte after the codec bytes being `marker`.
fn upstream_file(marker: u8, avc: &[u8], aac: &[u8]) -> Vec<u8> {
    let mut file = FILE_HEADER.to_vec();
    file.extend_from_slice(&[0, 0, 0, 0]);
    file.extend(tag(18, 0, b"\x02\x00\x0aonMetaData-duration-4"));
    file.extend(tag(9, 0, &[&[0x17, 0, 0, 0, 0][..], avc].concat()));
    file.extend(tag(8, 0, &[&[0xaf, 0][..], aac].concat()));
    let mut media: Vec<(u32, Vec<u8>)> = Vec::new();
    for frame in 0..5u32 {
        let key = if frame == 0 { 0x17 } else { 0x27 };
        media.push((
            frame * 40,
            tag(9, frame * 40, &[key, 1, 0, 0, 0, marker, frame as u8]),
        ));
    }
    for packet in 0..10u32 {
        media.push((
            packet * 21,
            tag(8, packet * 21, &[0xaf, 1, marker, packet as u8]),
        ));
    }
    media.sort_by_key(|(timestamp, _)| *timestamp);
    for (_, bytes) in media {
        file.extend(bytes);
    }
    file
}

fn info(sequence: u64) -> FragmentInfo {
    FragmentInfo {
        sequence,
        name: format!("batch-{sequence}.flv"),
        length: None,
    }
}

/// Runs `file` through the stage as fragment `sequence`, in chunks of the given sizes
/// (cycled).
fn run_file(
    stage: &mut FlvTimelineStage,
    sequence: u64,
    file: &[u8],
    splits: &[usize],
) -> (Vec<StageItem>, Result<(), StageError>) {
    stage_harness::run_stage(stage, &info(sequence), file, splits)
}

/// One tag of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OutTag {
    kind: u8,
    timestamp: u32,
    data: Vec<u8>,
}

/// Reads an FLV stream: how many file headers it has, and its tags; checks every
/// `PreviousTagSize`.
fn read_stream(stream: &[u8]) -> (usize, Vec<OutTag>) {
    let (mut headers, mut tags, mut at) = (0, Vec::new(), 0);
    while at < stream.len() {
        if stream[at..].starts_with(b"FLV") {
            headers += 1;
            at += 9 + 4;
            continue;
        }
        let header: [u8; 11] = stream[at..at + 11].try_into().unwrap();
        let parsed = TagHeader::parse(&header).unwrap();
        let size = parsed.data_size as usize;
        let previous =
            u32::from_be_bytes(stream[at + 11 + size..at + 15 + size].try_into().unwrap());
        assert_eq!(
            previous as usize,
            size + 11,
            "PreviousTagSize of the tag at {at}"
        );
        tags.push(OutTag {
            kind: header[0],
            timestamp: parsed.timestamp,
            data: stream[at + 11..at + 11 + size].to_vec(),
        });
        at += 15 + size;
    }
    (headers, tags)
}

fn media_timestamps(tags: &[OutTag], kind: u8) -> Vec<u32> {
    tags.iter()
        .filter(|tag| tag.kind == kind && tag.data.get(1) == Some(&1))
        .map(|tag| tag.timestamp)
        .collect()
}

// ---- the tests --------------------------------------------------------------------------

#[test]
fn files_join_into_one_stream_with_one_header_and_continuous_timestamps() {
    let mut stage = FlvTimelineStage::default();
    let mut stream = Vec::new();
    let mut spans = Vec::new();
    for marker in 1..=3u8 {
        let (items, result) = run_file(
            &mut stage,
            u64::from(marker),
            &upstream_file(marker, b"sps", b"asc"),
            &[usize::MAX],
        );
        result.unwrap();
        assert!(!items
            .iter()
            .any(|item| matches!(item, StageItem::NewSession { .. })));
        match items.last() {
            Some(StageItem::MediaSpan(span)) => {
                spans.push((span.start.as_millis(), span.end.as_millis()))
            }
            other => panic!("no media span at the end: {other:?}"),
        }
        stream.extend(joined(&items));
    }
    let (headers, tags) = read_stream(&stream);
    assert_eq!(headers, 1);
    assert!(
        tags.iter().all(|tag| tag.kind != 18),
        "script tags are dropped"
    );
    let sequence_headers = tags
        .iter()
        .filter(|tag| tag.data.get(1) == Some(&0))
        .count();
    assert_eq!(sequence_headers, 2, "one AVC and one AAC sequence header");
    // Video ends at 160 + 40 ms, audio at 189 + 21 ms: each file lasts 210 ms.
    assert_eq!(spans, [(0, 210), (210, 420), (420, 630)]);
    let video = media_timestamps(&tags, 9);
    assert_eq!(video[..6], [0, 40, 80, 120, 160, 210]);
    assert!(video.windows(2).all(|pair| pair[0] < pair[1]));
    let audio = media_timestamps(&tags, 8);
    assert_eq!(audio.len(), 30);
    assert_eq!(audio[9..11], [189, 210]);
    assert!(audio.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn output_is_identical_whatever_the_chunk_boundaries() {
    let outputs: Vec<Vec<u8>> = [vec![usize::MAX], vec![1], vec![7, 3, 11], vec![2, 64]]
        .iter()
        .map(|splits| {
            let mut stage = FlvTimelineStage::default();
            (1..=2u8)
                .flat_map(|marker| {
                    let (items, result) = run_file(
                        &mut stage,
                        u64::from(marker),
                        &upstream_file(marker, b"sps", b"asc"),
                        splits,
                    );
                    result.unwrap();
                    joined(&items)
                })
                .collect()
        })
        .collect();
    assert!(outputs.windows(2).all(|pair| pair[0] == pair[1]));
}

#[test]
fn a_changed_decoder_configuration_starts_a_new_session_with_its_own_header() {
    let mut stage = FlvTimelineStage::default();
    let (first, result) = run_file(&mut stage, 1, &upstream_file(1, b"sps-640", b"asc"), &[5]);
    result.unwrap();
    let (second, result) = run_file(&mut stage, 2, &upstream_file(2, b"sps-1280", b"asc"), &[5]);
    result.unwrap();
    let change = second
        .iter()
        .find_map(|item| match item {
            StageItem::NewSession { change } => Some(change.clone()),
            _ => None,
        })
        .expect("a new session");
    assert!(
        change.contains("batch-2.flv") && change.contains("video"),
        "{change}"
    );
    let (headers, tags) = read_stream(&joined(&second));
    assert_eq!(headers, 1, "the new session starts with a file header");
    assert!(tags[0].data.ends_with(b"sps-1280"));
    assert!(
        tags.iter().any(|tag| tag.data.ends_with(b"asc")),
        "and the audio configuration"
    );
    assert_eq!(read_stream(&joined(&first)).0, 1);
}

#[test]
fn a_new_session_after_a_rewind_gets_the_header_and_configurations_again() {
    let mut stage = FlvTimelineStage::default();
    for marker in 1..=2u8 {
        run_file(
            &mut stage,
            u64::from(marker),
            &upstream_file(marker, b"sps", b"asc"),
            &[64],
        )
        .1
        .unwrap();
    }
    stage.rewind(&info(2));
    let mut output = StageOutput::default();
    stage.start_session(&mut output).unwrap();
    let (items, result) = run_file(&mut stage, 2, &upstream_file(2, b"sps", b"asc"), &[64]);
    result.unwrap();
    let mut stream = joined(&output.drain().collect::<Vec<_>>());
    stream.extend(joined(&items));
    let (headers, tags) = read_stream(&stream);
    assert_eq!(headers, 1);
    assert_eq!(
        tags.iter()
            .filter(|tag| tag.data.get(1) == Some(&0))
            .count(),
        2
    );
    // The resent file starts where it started the first time.
    assert_eq!(media_timestamps(&tags, 9)[0], 210);
}

#[test]
fn a_restored_timeline_continues_without_a_second_header() {
    let mut stage = FlvTimelineStage::default();
    run_file(&mut stage, 1, &upstream_file(1, b"sps", b"asc"), &[64])
        .1
        .unwrap();
    let saved = stage.checkpoint().unwrap();
    let mut restored = FlvTimelineStage::default();
    restored.restore(saved).unwrap();
    let (items, result) = run_file(&mut restored, 2, &upstream_file(2, b"sps", b"asc"), &[64]);
    result.unwrap();
    let (headers, tags) = read_stream(&joined(&items));
    assert_eq!(headers, 0);
    assert_eq!(media_timestamps(&tags, 9)[0], 210);
}

#[test]
fn bad_files_fail_alone_with_what_is_wrong() {
    let good = upstream_file(1, b"sps", b"asc");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not flv",
            b"\0\0\0\x18ftypisom-not-an-flv-file".to_vec(),
            "does not begin with an FLV header",
        ),
        (
            "cut in a tag",
            good[..good.len() - 6].to_vec(),
            "bytes before the end of the tag at offset",
        ),
        (
            "cut in a header",
            good[..20].to_vec(),
            "ends inside the tag at offset",
        ),
        ("no media", good[..13].to_vec(), "no audio or video tag"),
        (
            "bad tag type",
            [&good[..13], &[7u8; 15][..]].concat(),
            "tag type 7",
        ),
    ];
    for (what, file, expected) in cases {
        let mut stage = FlvTimelineStage::default();
        let (_, result) = run_file(&mut stage, 1, &file, &[5]);
        let error = result.expect_err(what);
        assert!(
            error.message.contains(expected),
            "{what}: {}",
            error.message
        );
        assert!(
            error.message.contains("batch-1.flv"),
            "{what}: {}",
            error.message
        );
        // The next file still goes on.
        let (_, next) = run_file(&mut stage, 2, &good, &[5]);
        next.unwrap();
    }
}

#[test]
fn random_and_damaged_input_never_panics() {
    stage_harness::feed_damaged_copies::<FlvTimelineStage>(&upstream_file(1, b"sps", b"asc"), 3000);
}

#[test]
fn every_media_tag_is_marked_with_its_time_for_pacing() {
    let mut stage = FlvTimelineStage::default();
    let mut marks = Vec::new();
    for marker in 1..=2u8 {
        let (items, result) = run_file(
            &mut stage,
            u64::from(marker),
            &upstream_file(marker, b"sps", b"asc"),
            &[7],
        );
        result.unwrap();
        marks.extend(
            stage_harness::media_times(&items)
                .iter()
                .map(|time| time.as_millis() as u32),
        );
    }
    // The marks are the media tags' timestamps, in stream order (15 tags per file).
    let mut expected: Vec<u32> = (0..5).map(|frame| frame * 40).collect();
    expected.extend((0..10).map(|packet| packet * 21));
    expected.sort();
    let second: Vec<u32> = expected.iter().map(|time| time + 210).collect();
    expected.extend(second);
    assert_eq!(marks, expected);
}

// ---- filler -------------------------------------------------------------------------------

fn real_file() -> Vec<u8> {
    stage_harness::ffmpeg_media("flv", &[])
}

/// The video sequence headers' configurations and the video frames (timestamp, keyframe) of
/// `tags`, in order.
fn video_configurations(tags: &[OutTag]) -> Vec<Vec<u8>> {
    tags.iter()
        .filter(|tag| tag.kind == 9 && tag.data[1] == 0)
        .map(|tag| tag.data[5..].to_vec())
        .collect()
}

fn video_frames(tags: &[OutTag]) -> Vec<(u32, bool)> {
    tags.iter()
        .filter(|tag| tag.kind == 9 && tag.data[1] == 1)
        .map(|tag| (tag.timestamp, tag.data[0] >> 4 == 1))
        .collect()
}

fn fill(stage: &mut FlvTimelineStage, until_ms: u64) -> Vec<u8> {
    let mut output = StageOutput::default();
    made(stage)
        .fill(Duration::from_millis(until_ms), &mut output)
        .unwrap();
    joined(&output.drain().collect::<Vec<_>>())
}

#[test]
fn a_gap_is_filled_on_the_timeline_with_sequence_headers_at_each_switch() {
    let file = real_file();
    let mut stage =
        FlvTimelineStage::default().with_filler(FillerSource::Generate, "ffmpeg".into());
    let (items, result) = run_file(&mut stage, 1, &file, &[4096]);
    result.unwrap();
    let mut stream = joined(&items);
    // Upstream is late by 1.2 s, filled in 200-ms steps.
    for until in (1200..=2200).step_by(200) {
        stream.extend(fill(&mut stage, until));
    }
    let (items, result) = run_file(&mut stage, 2, &file, &[4096]);
    result.unwrap();
    stream.extend(joined(&items));

    let (headers, tags) = read_stream(&stream);
    assert_eq!(headers, 1);
    // Stream, filler, stream again: the stream's avcC is sent again when it resumes.
    let configurations = video_configurations(&tags);
    assert_eq!(configurations.len(), 3, "{configurations:02x?}");
    assert_ne!(configurations[0], configurations[1]);
    assert_eq!(configurations[0], configurations[2]);
    // Filler frames every 40 ms from where the first file ended (its last tag plus its
    // interval) to before 2.2 s, starting with a keyframe; the second file starts at 2.2 s
    // (its video, as in the first, a little after its start: ffmpeg's audio priming).
    let frames = video_frames(&tags);
    assert_eq!(frames.len(), 25 + 29 + 25, "{frames:?}");
    let filler = &frames[25..25 + 29];
    assert!(filler[0].1, "the filler starts with a keyframe");
    assert!(filler[0].0 >= frames[24].0 + 40);
    assert!(filler.windows(2).all(|pair| pair[1].0 - pair[0].0 == 40));
    assert!(filler[28].0 < 2200);
    assert_eq!(frames[25 + 29], (2200 + frames[0].0, true));
    assert!(frames.windows(2).all(|pair| pair[0].0 < pair[1].0));
    // Audio goes on with the stream's configuration: one audio sequence header.
    let audio_headers = tags
        .iter()
        .filter(|tag| tag.kind == 8 && tag.data[1] == 0)
        .count();
    assert_eq!(audio_headers, 1);
}

#[test]
fn a_session_that_begins_in_a_gap_begins_with_the_filler_s_keyframe_and_configuration() {
    let file = real_file();
    let mut stage =
        FlvTimelineStage::default().with_filler(FillerSource::Generate, "ffmpeg".into());
    run_file(&mut stage, 1, &file, &[4096]).1.unwrap();
    let first_session = fill(&mut stage, 1500);
    let (_, filler_tags) = read_stream(&first_session);
    let filler_avcc = video_configurations(&filler_tags)[0].clone();
    // The server went away mid-gap; the new session starts with the filler.
    let mut output = StageOutput::default();
    stage.start_session(&mut output).unwrap();
    let mut stream = joined(&output.drain().collect::<Vec<_>>());
    stream.extend(fill(&mut stage, 2000));
    let (headers, tags) = read_stream(&stream);
    assert_eq!(headers, 1);
    assert_eq!(video_configurations(&tags), vec![filler_avcc]);
    let frames = video_frames(&tags);
    assert!(frames[0].1, "{frames:?}");
    assert!(frames[0].0 >= 1500);
}

#[test]
fn a_stream_no_filler_can_match_fails_each_fill_naming_why() {
    // Synthetic sequence headers: not a readable avcC.
    let mut stage =
        FlvTimelineStage::default().with_filler(FillerSource::Generate, "ffmpeg".into());
    let mut output = StageOutput::default();
    let before = made(&mut stage)
        .fill(Duration::from_millis(100), &mut output)
        .unwrap_err();
    assert!(before.message.contains("no media"), "{}", before.message);
    run_file(&mut stage, 1, &upstream_file(1, b"sps", b"asc"), &[64])
        .1
        .unwrap();
    let error = made(&mut stage)
        .fill(Duration::from_secs(1), &mut output)
        .unwrap_err();
    assert!(
        error.message.contains("no filler can be made") && error.message.contains("avcC"),
        "{}",
        error.message
    );
    assert_eq!(output.drain().count(), 0);
}

#[test]
fn a_session_that_carried_its_limit_ends_at_the_next_file_with_a_new_header() {
    let mut stage = FlvTimelineStage::default().with_session_limit(Duration::from_millis(300));
    let mut third = Vec::new();
    for marker in 1..=3u8 {
        let (items, result) = run_file(
            &mut stage,
            u64::from(marker),
            &upstream_file(marker, b"sps", b"asc"),
            &[64],
        );
        result.unwrap();
        let new_sessions = items
            .iter()
            .filter(|item| matches!(item, StageItem::NewSession { .. }))
            .count();
        // Files last 210 ms: the third begins after 420 ms of the session.
        assert_eq!(new_sessions, usize::from(marker == 3), "file {marker}");
        third = items;
    }
    assert!(
        matches!(&third[0], StageItem::NewSession { change } if change.contains("session_limit"))
    );
    let (headers, tags) = read_stream(&joined(&third));
    assert_eq!(headers, 1, "the new session's file header");
    assert_eq!(tags[0].data, [&[0x17, 0, 0, 0, 0][..], b"sps"].concat());
    // The timeline goes on (ffmpeg starts the new session's output at 0).
    assert_eq!(media_timestamps(&tags, 9)[0], 420);
}

#[test]
fn a_tag_cut_short_is_dropped_whole_and_the_stream_stays_in_sync() {
    let good = upstream_file(1, b"sps", b"asc");
    let cut = &good[..good.len() - 6];
    for split in [1, 5, 64, usize::MAX] {
        let mut stage = FlvTimelineStage::default();
        let (items, result) = run_file(&mut stage, 1, cut, &[split]);
        assert!(result.unwrap_err().message.contains("the tag is dropped"));
        let (next, result) = run_file(&mut stage, 2, &upstream_file(2, b"sps", b"asc"), &[split]);
        result.unwrap();
        // Every tag written is whole (read_stream checks each size), no zeros: the cut file's
        // last tag is missing, the next file's are all there.
        let (_, tags) = read_stream(&[joined(&items), joined(&next)].concat());
        let media = |marker: u8| {
            let marker_at = |tag: &OutTag| if tag.kind == 9 { 5 } else { 2 };
            tags.iter()
                .filter(|tag| tag.data.get(1) == Some(&1))
                .filter(|tag| tag.data.get(marker_at(tag)) == Some(&marker))
                .count()
        };
        assert_eq!((media(1), media(2)), (14, 15), "split {split}");
        // Only whole tags were marked for pacing.
        assert_eq!(stage_harness::media_times(&items).len(), 14);
    }
}

#[test]
fn a_file_resumed_from_inside_starts_at_its_last_keyframe_before_the_point_after_its_headers() {
    // Video at 0, 40, ... 240 ms, keyframes at 0 and 120 ms; audio every 21 ms.
    let mut file = FILE_HEADER.to_vec();
    file.extend_from_slice(&[0, 0, 0, 0]);
    file.extend(tag(9, 0, &[0x17, 0, 0, 0, 0, b'c']));
    file.extend(tag(8, 0, &[0xaf, 0, b'a']));
    let mut media: Vec<(u32, Vec<u8>)> = Vec::new();
    for frame in 0..7u32 {
        let key = if frame % 3 == 0 { 0x17 } else { 0x27 };
        media.push((
            frame * 40,
            tag(9, frame * 40, &[key, 1, 0, 0, 0, frame as u8]),
        ));
    }
    for packet in 0..13u32 {
        media.push((packet * 21, tag(8, packet * 21, &[0xaf, 1, packet as u8])));
    }
    media.sort_by_key(|(timestamp, _)| *timestamp);
    for (_, bytes) in media {
        file.extend(bytes);
    }
    for split in [3, 17, usize::MAX] {
        let mut stage = FlvTimelineStage::default();
        stage.resume_fragment(Duration::from_millis(150));
        let (items, result) = run_file(&mut stage, 1, &file, &[split]);
        result.unwrap();
        let (headers, tags) = read_stream(&joined(&items));
        assert_eq!(headers, 1);
        assert_eq!(tags[0].data[..2], [0x17, 0], "split {split}");
        assert_eq!(tags[1].data[..2], [0xaf, 0]);
        // From the keyframe at 120 ms: no tag before it, every one after it.
        assert_eq!((tags[2].kind, tags[2].timestamp), (9, 120), "split {split}");
        assert_eq!(tags[2].data[0], 0x17);
        assert_eq!(media_timestamps(&tags, 9), [120, 160, 200, 240]);
        assert_eq!(
            media_timestamps(&tags, 8),
            [126, 147, 168, 189, 210, 231, 252]
        );
        let first_time = items.iter().find_map(|item| match item {
            StageItem::MediaTime(time) => Some(*time),
            _ => None,
        });
        assert_eq!(first_time, Some(Duration::from_millis(120)));
    }
}

/// The stage, once the filler clip it is making is made: fills in these tests expect it.
fn made(stage: &mut FlvTimelineStage) -> &mut FlvTimelineStage {
    stage.format_mut().filler.wait_until_made();
    stage
}
