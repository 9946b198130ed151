//! The packetizer on a synthetic fragmented MP4 built here: one H.264 and one AAC track, a
//! `moof` with two samples of each.

use std::time::Duration;

use bytes::Bytes;

use streampub_core::plugin::FragmentInfo;
use streampub_core::plugin::StageItem;

use super::*;
use crate::formats::flv::TagHeader;
use crate::formats::flv::FILE_HEADER;
use crate::formats::mp4::boxes::write_box;
use crate::stage_harness::{joined, media_times, run_stage};

fn boxed(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
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

fn trak(id: u32, handler: &[u8; 4], timescale: u32, entry: Vec<u8>) -> Vec<u8> {
    let tkhd = boxed(b"tkhd", &[&be(&[3, 0, 0, id]), &[0; 68]]);
    let mdhd = boxed(b"mdhd", &[&be(&[0, 0, 0, timescale, 0]), &[0; 4]]);
    let hdlr = boxed(b"hdlr", &[&be(&[0, 0]), handler, &[0; 13]]);
    let stsd = boxed(b"stsd", &[&be(&[0, 1]), &entry]);
    let stbl = boxed(b"stbl", &[&stsd]);
    let minf = boxed(b"minf", &[&stbl]);
    let mdia = boxed(b"mdia", &[&mdhd, &hdlr, &minf]);
    boxed(b"trak", &[&tkhd, &mdia])
}

fn init_segment() -> Vec<u8> {
    let mut avc1 = vec![0; 6];
    avc1.extend_from_slice(&[0, 1]);
    avc1.extend_from_slice(&[0; 16]);
    avc1.extend(be(&[(320 << 16) | 180, 0x0048_0000, 0x0048_0000, 0]));
    avc1.extend_from_slice(&[0, 1]);
    avc1.extend_from_slice(&[0; 32]);
    avc1.extend_from_slice(&[0, 24, 0xff, 0xff]);
    write_box(&mut avc1, b"avcC", b"AVCC-RECORD");
    let mut mp4a = vec![0; 6];
    mp4a.extend_from_slice(&[0, 1]);
    mp4a.extend_from_slice(&[0; 8]);
    mp4a.extend(be(&[(2 << 16) | 16, 0, 48_000 << 16]));
    let asc = [0x05, 2, 0x11, 0x90];
    let decoder = [&[0x04, 17, 0x40, 0x15, 0, 0, 0][..], &[0; 8], &asc].concat();
    let es = [&[0x03, 3 + decoder.len() as u8, 0, 1, 0][..], &decoder].concat();
    write_box(&mut mp4a, b"esds", &[&[0, 0, 0, 0][..], &es].concat());
    let mvex = boxed(
        b"mvex",
        &[
            &boxed(b"trex", &[&be(&[0, 1, 1, 0, 0, 0])]),
            &boxed(b"trex", &[&be(&[0, 2, 1, 0, 0, 0])]),
        ],
    );
    let moov = boxed(
        b"moov",
        &[
            &boxed(b"mvhd", &[&[0; 100]]),
            &trak(1, b"vide", 90_000, boxed(b"avc1", &[&avc1])),
            &trak(2, b"soun", 48_000, boxed(b"mp4a", &[&mp4a])),
            &mvex,
        ],
    );
    [boxed(b"ftyp", &[b"iso5\0\0\0\x01iso5"]), moov].concat()
}

/// A `moof` + `mdat`: video samples `V0`, `V1` (3000 ticks at 90 kHz, the first a sync sample
/// shown 6000 ticks after its decode), audio samples `A0`, `A1` (1024 ticks at 48 kHz).
fn media_segment() -> Vec<u8> {
    media_segment_at(0)
}

/// [`media_segment`] with its first samples decoded at `seconds` on the timeline.
fn media_segment_at(seconds: u32) -> Vec<u8> {
    let build = |video_offset: u32, audio_offset: u32| {
        let video = boxed(
            b"traf",
            &[
                &boxed(b"tfhd", &[&be(&[0x0002_0000, 1])]),
                &boxed(b"tfdt", &[&be(&[0x0100_0000, 0, seconds * 90_000])]),
                &boxed(
                    b"trun",
                    &[&be(&[
                        0x0f01,
                        2,
                        video_offset,
                        3000,
                        4,
                        0x0200_0000,
                        6000,
                        3000,
                        4,
                        0x0101_0000,
                        0,
                    ])],
                ),
            ],
        );
        let audio = boxed(
            b"traf",
            &[
                &boxed(b"tfhd", &[&be(&[0x0002_0000, 2])]),
                &boxed(b"tfdt", &[&be(&[0x0100_0000, 0, seconds * 48_000])]),
                &boxed(
                    b"trun",
                    &[&be(&[0x0301, 2, audio_offset, 1024, 2, 1024, 2])],
                ),
            ],
        );
        boxed(b"moof", &[&boxed(b"mfhd", &[&be(&[0, 1])]), &video, &audio])
    };
    let moof_len = build(0, 0).len() as u32;
    let moof = build(moof_len + 8, moof_len + 8 + 8);
    [moof, boxed(b"mdat", &[b"V0aaV1bbA0A1"])].concat()
}

/// The audio and video tags of an FLV stream: (type, timestamp, body); checks the file header,
/// that an `onMetaData` script tag comes first, and every PreviousTagSize.
fn tags_of(stream: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    let tags = all_tags_of(stream);
    assert_eq!(tags[0].0, 18, "onMetaData first");
    assert_eq!(tags[0].2[..13], *b"\x02\x00\x0aonMetaData");
    tags.into_iter().filter(|tag| tag.0 != 18).collect()
}

/// Every tag of an FLV stream, script tags included.
fn all_tags_of(stream: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    assert_eq!(&stream[..3], b"FLV");
    assert_eq!(stream[4], 0x05, "audio and video flags");
    let mut at = 13;
    let mut tags = Vec::new();
    while at < stream.len() {
        let header: [u8; 11] = stream[at..at + 11].try_into().unwrap();
        let parsed = TagHeader::parse(&header).unwrap();
        let size = parsed.data_size as usize;
        let previous =
            u32::from_be_bytes(stream[at + 11 + size..at + 15 + size].try_into().unwrap());
        assert_eq!(previous as usize, size + 11);
        tags.push((
            header[0],
            parsed.timestamp,
            stream[at + 11..at + 11 + size].to_vec(),
        ));
        at += 15 + size;
    }
    tags
}

#[test]
fn samples_become_tags_interleaved_by_decode_time_after_the_sequence_headers() {
    let file = [init_segment(), media_segment()].concat();
    let info = FragmentInfo {
        sequence: 1,
        name: "batch-0.mp4".into(),
        length: None,
    };
    for split in [1, 7, usize::MAX] {
        let mut stage = Fmp4ToFlvStage::default();
        let (items, result) = run_stage(&mut stage, &info, &file, &[split]);
        result.unwrap();
        let tags = tags_of(&joined(&items));
        let expected: Vec<(u8, u32, Vec<u8>)> = vec![
            (9, 0, [&[0x17, 0, 0, 0, 0][..], b"AVCC-RECORD"].concat()),
            (8, 0, vec![0xaf, 0, 0x11, 0x90]),
            // 6000 ticks of composition offset at 90 kHz: 67 ms.
            (9, 0, [&[0x17, 1, 0, 0, 67][..], b"V0aa"].concat()),
            (8, 0, [&[0xaf, 1][..], b"A0"].concat()),
            // 1024 / 48000 s: 21 ms; 3000 / 90000 s: 33 ms.
            (8, 21, [&[0xaf, 1][..], b"A1"].concat()),
            (9, 33, [&[0x27, 1, 0, 0, 0][..], b"V1bb"].concat()),
        ];
        assert_eq!(tags, expected, "split {split}");
    }
}

/// The test stream with its video called HEVC: `hvc1` with an `hvcC`.
fn hevc_stream() -> Vec<u8> {
    let mut renamed = [init_segment(), media_segment()].concat();
    for (from, to) in [(b"avc1", b"hvc1"), (b"avcC", b"hvcC")] {
        let at = renamed
            .windows(4)
            .position(|window| window == from)
            .unwrap();
        renamed[at..at + 4].copy_from_slice(to);
    }
    renamed
}

#[test]
fn hevc_becomes_enhanced_rtmp_fourcc_tags_when_asked() {
    let mut stage = Fmp4ToFlvStage::default().with_enhanced_rtmp(true);
    let (items, result) = run_stage(&mut stage, &fragment(1), &hevc_stream(), &[usize::MAX]);
    result.unwrap();
    let stream = joined(&items);
    let tags = tags_of(&stream);
    let expected: Vec<(u8, u32, Vec<u8>)> = vec![
        // SequenceStart, keyframe: the hvcC record as MP4 holds it.
        (9, 0, [&[0x90][..], b"hvc1", b"AVCC-RECORD"].concat()),
        (8, 0, vec![0xaf, 0, 0x11, 0x90]),
        // CodedFrames with its composition time (67 ms).
        (9, 0, [&[0x91][..], b"hvc1", &[0, 0, 67], b"V0aa"].concat()),
        (8, 0, [&[0xaf, 1][..], b"A0"].concat()),
        (8, 21, [&[0xaf, 1][..], b"A1"].concat()),
        // CodedFramesX, an inter frame: no composition time.
        (9, 33, [&[0xa3][..], b"hvc1", b"V1bb"].concat()),
    ];
    assert_eq!(tags, expected);
    // onMetaData names the codec by its FourCC.
    let metadata = &all_tags_of(&stream)[0].2;
    let at = metadata
        .windows(12)
        .position(|window| window == b"videocodecid")
        .unwrap();
    let number = f64::from_be_bytes(metadata[at + 13..at + 21].try_into().unwrap());
    assert_eq!(number, f64::from(u32::from_be_bytes(*b"hvc1")));
}

#[test]
fn opus_head_is_made_from_dops() {
    // dOps: version 0, 2 channels, pre-skip 312, 48 kHz, gain 0, family 0.
    let dops = [0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0];
    let head = crate::formats::flv::tags::opus_head(&dops).unwrap();
    assert_eq!(
        head,
        [
            &b"OpusHead"[..],
            &[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]
        ]
        .concat()
    );
    assert!(crate::formats::flv::tags::opus_head(&dops[..5]).is_err());
}

#[test]
fn a_codec_flv_cannot_carry_fails_every_fragment_of_that_stream() {
    let renamed = hevc_stream();
    let mut stage = Fmp4ToFlvStage::default();
    for sequence in 1..=2 {
        let info = FragmentInfo {
            sequence,
            name: format!("batch-{sequence}.mp4"),
            length: None,
        };
        // The timeline stage sends the init segment once: the second fragment is media only.
        let input = if sequence == 1 {
            renamed.clone()
        } else {
            media_segment()
        };
        let (_, result) = run_stage(&mut stage, &info, &input, &[64]);
        let error = result.unwrap_err().message;
        assert!(
            error.contains("HEVC") && error.contains("ffmpeg_input: mp4"),
            "{error}"
        );
    }
}

fn fragment(sequence: u64) -> FragmentInfo {
    FragmentInfo {
        sequence,
        name: format!("batch-{sequence}.mp4"),
        length: None,
    }
}

#[test]
fn timestamps_past_24_bits_use_the_extended_byte() {
    // 16,777,200 ms: the video sample 33 ms later is past 2^24 - 1.
    let mut stage = Fmp4ToFlvStage::default().starting_at(Duration::from_millis(16_777_200));
    let file = [init_segment(), media_segment()].concat();
    let (items, result) = run_stage(&mut stage, &fragment(1), &file, &[usize::MAX]);
    result.unwrap();
    let stream = joined(&items);
    let timestamps: Vec<u32> = tags_of(&stream).iter().map(|tag| tag.1).collect();
    let start = 16_777_200;
    assert_eq!(
        timestamps,
        [start, start, start, start, start + 21, start + 33]
    );
    // The last tag's header: 24 low bits, then the extended (high) byte.
    let last = stream.len() - 4 - (5 + 4) - 11;
    assert_eq!(stream[last + 4..last + 8], [0x00, 0x00, 0x11, 0x01]);
}

#[test]
fn a_session_that_reached_its_limit_ends_at_the_next_fragment_and_the_next_starts_at_zero() {
    // A limit of 1 s, the first session starting at 990 ms: fragment 1's samples reach it.
    let mut stage = Fmp4ToFlvStage::default()
        .with_session_limit(Duration::from_secs(1))
        .starting_at(Duration::from_millis(990));
    let first = [init_segment(), media_segment()].concat();
    let (items, result) = run_stage(&mut stage, &fragment(1), &first, &[usize::MAX]);
    result.unwrap();
    assert!(!items
        .iter()
        .any(|item| matches!(item, StageItem::NewSession { .. })));
    let timestamps: Vec<u32> = tags_of(&joined(&items)).iter().map(|tag| tag.1).collect();
    assert_eq!(timestamps, [990, 990, 990, 990, 1011, 1023]);

    // Fragment 2 (decoded from 5 s on) begins a new session: its own FLV header and
    // sequence headers, timestamps from 0.
    let (items, result) = run_stage(&mut stage, &fragment(2), &media_segment_at(5), &[9]);
    result.unwrap();
    assert!(
        matches!(&items[0], StageItem::NewSession { change } if change.contains("session_limit")),
        "{:?}",
        items[0]
    );
    let tags = tags_of(&joined(&items));
    let timestamps: Vec<u32> = tags.iter().map(|tag| tag.1).collect();
    assert_eq!(timestamps, [0, 0, 0, 0, 21, 33]);
    assert_eq!(
        tags[0].2,
        [&[0x17, 0, 0, 0, 0][..], b"AVCC-RECORD"].concat()
    );

    // The new session is far from its limit: fragment 3 continues it.
    let (items, result) = run_stage(&mut stage, &fragment(3), &media_segment_at(6), &[64]);
    result.unwrap();
    assert!(
        matches!(&items[0], StageItem::MediaTime(_)),
        "{:?}",
        items[0]
    );
}

#[test]
fn filler_loops_from_its_keyframe_and_the_stream_takes_over_with_its_own_headers() {
    let mut stage = Fmp4ToFlvStage::default().with_filler(FillerSource::Generate, "ffmpeg".into());
    let first = [init_segment(), media_segment()].concat();
    let (items, result) = run_stage(&mut stage, &fragment(1), &first, &[usize::MAX]);
    result.unwrap();
    let mut stream = joined(&items);
    // The stream's media ends at 67 ms (two frames of 33.3 ms). Filler in steps, as the
    // runtime asks for it, up to 2.5 s.
    let mut output = StageOutput::default();
    for step in 1..=10 {
        made(&mut stage)
            .fill(Duration::from_millis(67 + step * 250), &mut output)
            .unwrap();
    }
    let items: Vec<StageItem> = output.drain().collect();
    stream.extend(joined(&items));
    // Fragment 2 at 3 s: the stream takes over.
    let (items, result) = run_stage(&mut stage, &fragment(2), &media_segment_at(3), &[64]);
    result.unwrap();
    stream.extend(joined(&items));

    let tags = tags_of(&stream);
    let filler: Vec<&(u8, u32, Vec<u8>)> = tags[6..tags.len() - 5].iter().collect();
    // A new video sequence header (ffmpeg's avcC) first; the AAC configuration is the
    // stream's, so it is not sent again.
    assert_eq!(filler[0].0, 9);
    assert_eq!(filler[0].2[..2], [0x17, 0]);
    assert!(filler[1..].iter().all(|tag| tag.2[1] == 1), "media only");
    let video: Vec<(u32, bool)> = filler
        .iter()
        .skip(1)
        .filter(|tag| tag.0 == 9)
        .map(|tag| (tag.1, tag.2[0] == 0x17))
        .collect();
    let audio: Vec<u32> = filler
        .iter()
        .filter(|tag| tag.0 == 8)
        .map(|tag| tag.1)
        .collect();
    assert_eq!(video.first(), Some(&(67, true)));
    assert!(video.iter().all(|(at, _)| (67..2567).contains(at)));
    // 30 frames per second, a keyframe at each loop's start, one loop per second.
    assert!((74..=76).contains(&video.len()), "{}", video.len());
    let keyframes: Vec<u32> = video.iter().filter(|v| v.1).map(|v| v.0).collect();
    assert_eq!(keyframes, [67, 1067, 2067]);
    assert!(video
        .windows(2)
        .all(|pair| (33..=34).contains(&(pair[1].0 - pair[0].0))));
    assert!(audio.first() == Some(&67) && audio.last() < Some(&2567));
    // AAC frames of 21.3 ms; each loop cuts the audio at its end (at most one frame short).
    assert!(audio
        .windows(2)
        .all(|pair| (18..=22).contains(&(pair[1] - pair[0]))));
    // The stream's own sequence header again, right before its first frame at 3 s.
    let resumed = &tags[tags.len() - 5..];
    assert_eq!(
        resumed[0],
        (9, 3000, [&[0x17, 0, 0, 0, 0][..], b"AVCC-RECORD"].concat())
    );
    assert_eq!(resumed[1].1, 3000);
    assert_eq!(resumed[1].2[..2], [0x17, 1]);
}

/// The AMF0 number that follows `name` in a script tag's body.
fn metadata_number(body: &[u8], name: &str) -> Option<f64> {
    let key = [
        &(name.len() as u16).to_be_bytes()[..],
        name.as_bytes(),
        &[0x00],
    ]
    .concat();
    let at = body.windows(key.len()).position(|window| window == key)? + key.len();
    Some(f64::from_be_bytes(body[at..at + 8].try_into().ok()?))
}

#[test]
fn the_session_begins_with_on_metadata_describing_the_stream() {
    let file = [init_segment(), media_segment()].concat();
    let mut stage = Fmp4ToFlvStage::default();
    let (items, result) = run_stage(&mut stage, &fragment(1), &file, &[5]);
    result.unwrap();
    let tags = all_tags_of(&joined(&items));
    let (kind, timestamp, body) = &tags[0];
    assert_eq!((*kind, *timestamp), (18, 0));
    let number = |name| metadata_number(body, name);
    assert_eq!(number("width"), Some(320.0));
    assert_eq!(number("height"), Some(180.0));
    assert_eq!(number("framerate"), Some(30.0));
    assert_eq!(number("videocodecid"), Some(7.0));
    assert_eq!(number("audiocodecid"), Some(10.0));
    assert_eq!(number("audiosamplerate"), Some(48_000.0));
    assert!(body.ends_with(&[0, 0, 9]), "the ECMA array's end marker");
    // Then the sequence headers and the samples.
    assert_eq!(tags[1].0, 9);
    assert_eq!(tags.iter().filter(|tag| tag.0 == 18).count(), 1);
}

/// A slate made by ffmpeg: `seconds` of a test pattern at 640x360, 25 fps, with a tone at
/// 44.1 kHz mono unless `audio` is false.
fn slate(directory: &std::path::Path, audio: bool) -> std::path::PathBuf {
    let path = directory.join(if audio { "slate.mp4" } else { "silent.mp4" });
    let mut command = std::process::Command::new("ffmpeg");
    command.args([
        "-v",
        "error",
        "-nostdin",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=25",
    ]);
    if audio {
        command.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
    }
    let status = command
        .args(["-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .args(if audio { &["-c:a", "aac"][..] } else { &[][..] })
        .arg(&path)
        .status()
        .expect("ffmpeg not found; run scripts/test, which installs it");
    assert!(status.success());
    path
}

#[test]
fn a_slate_is_converted_to_the_stream_and_one_that_lacks_a_track_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let first = [init_segment(), media_segment()].concat();
    // A 640x360, 25 fps, 44.1 kHz mono slate, for a 320x180, 30 fps, 48 kHz stereo stream.
    let mut stage = Fmp4ToFlvStage::default().with_filler(
        FillerSource::File(slate(directory.path(), true)),
        "ffmpeg".into(),
    );
    let (items, result) = run_stage(&mut stage, &fragment(1), &first, &[usize::MAX]);
    result.unwrap();
    let mut output = StageOutput::default();
    for step in 1..=5 {
        made(&mut stage)
            .fill(Duration::from_millis(67 + step * 200), &mut output)
            .unwrap();
    }
    let filled: Vec<StageItem> = output.drain().collect();
    let stream = [joined(&items), joined(&filled)].concat();
    let tags = tags_of(&stream);
    let filler = &tags[6..];
    // The slate's own H.264 configuration first, then its frames at the stream's 30 fps.
    assert_eq!(filler[0].2[..2], [0x17, 0]);
    let video: Vec<u32> = filler[1..]
        .iter()
        .filter(|tag| tag.0 == 9)
        .map(|tag| tag.1)
        .collect();
    assert_eq!(video.first(), Some(&67));
    assert!((29..=31).contains(&video.len()), "{} frames", video.len());
    assert!(video
        .windows(2)
        .all(|pair| (33..=34).contains(&(pair[1] - pair[0]))));
    // Audio resampled to 48 kHz stereo: the stream's configuration, so no new header.
    let audio: Vec<&(u8, u32, Vec<u8>)> = filler.iter().filter(|tag| tag.0 == 8).collect();
    assert!(
        audio.iter().all(|tag| tag.2[1] == 1),
        "no audio sequence header"
    );
    assert!(audio.len() >= 45, "{} audio packets", audio.len());

    // A slate without audio for a stream with audio: the fill fails, saying so.
    let mut stage = Fmp4ToFlvStage::default().with_filler(
        FillerSource::File(slate(directory.path(), false)),
        "ffmpeg".into(),
    );
    let (_, result) = run_stage(&mut stage, &fragment(1), &first, &[usize::MAX]);
    result.unwrap();
    let error = made(&mut stage)
        .fill(Duration::from_millis(300), &mut StageOutput::default())
        .unwrap_err()
        .message;
    assert!(
        error.contains("silent.mp4")
            && error.contains("the stream has audio but the filler has none"),
        "{error}"
    );
}

/// The body of the first video sequence header among `items` (the filler's, after a fill).
fn filler_configuration(items: &[StageItem]) -> Vec<u8> {
    let tags = all_tags_of(&[FILE_HEADER.to_vec(), vec![0; 4], joined(items)].concat());
    tags.into_iter()
        .find(|tag| tag.0 == 9 && tag.2[..2] == [0x17, 0])
        .expect("a video sequence header")
        .2
}

/// A stage with the generated filler that has read its first fragment.
fn filling_stage() -> Fmp4ToFlvStage {
    let mut stage = Fmp4ToFlvStage::default().with_filler(FillerSource::Generate, "ffmpeg".into());
    let (_, result) = run_stage(
        &mut stage,
        &fragment(1),
        &[init_segment(), media_segment()].concat(),
        &[usize::MAX],
    );
    result.unwrap();
    stage
}

#[test]
fn a_changed_stream_is_described_anew_and_gets_its_own_filler() {
    let mut stage = filling_stage();
    let mut output = StageOutput::default();
    made(&mut stage)
        .fill(Duration::from_millis(300), &mut output)
        .unwrap();
    let small = filler_configuration(&output.drain().collect::<Vec<_>>());
    // The same stream at 640x360 (the timeline stage asks the sink for a new session first).
    let mut larger = init_segment();
    let size = ((320u32 << 16) | 180).to_be_bytes();
    let at = larger.windows(4).position(|window| window == size).unwrap();
    larger[at..at + 4].copy_from_slice(&((640u32 << 16) | 360).to_be_bytes());
    stage.start_session(&mut output).unwrap();
    let (items, result) = run_stage(
        &mut stage,
        &fragment(2),
        &[larger, media_segment_at(1)].concat(),
        &[usize::MAX],
    );
    result.unwrap();
    let tags = all_tags_of(&joined(&items));
    assert_eq!(metadata_number(&tags[0].2, "width"), Some(640.0));
    assert_eq!(metadata_number(&tags[0].2, "height"), Some(360.0));
    made(&mut stage)
        .fill(Duration::from_millis(1300), &mut output)
        .unwrap();
    let large = filler_configuration(&output.drain().collect::<Vec<_>>());
    assert_ne!(small, large, "a filler made for the new size");
}

#[test]
fn a_session_that_begins_in_a_gap_begins_with_the_filler_s_keyframe() {
    let mut stage = filling_stage();
    let mut output = StageOutput::default();
    made(&mut stage)
        .fill(Duration::from_millis(500), &mut output)
        .unwrap();
    // The server dropped the session in the gap: a new one, filler goes on.
    let mut output = StageOutput::default();
    stage.start_session(&mut output).unwrap();
    made(&mut stage)
        .fill(Duration::from_millis(900), &mut output)
        .unwrap();
    let items: Vec<StageItem> = output.drain().collect();
    let tags = tags_of(&joined(&items));
    let first_frame = tags
        .iter()
        .find(|tag| tag.0 == 9 && tag.2[1] == 1)
        .expect("filler frames");
    assert_eq!(first_frame.2[0], 0x17, "a keyframe first");
    // Announced with the filler's own decoder configuration, once (not the stream's, then the
    // filler's: a reader keeps the first and decodes the filler with the wrong one).
    let headers: Vec<&(u8, u32, Vec<u8>)> = tags
        .iter()
        .filter(|tag| tag.0 == 9 && tag.2[1] == 0)
        .collect();
    assert_eq!(headers.len(), 1);
    assert!(!headers[0].2.ends_with(b"AVCC-RECORD"));
    // It goes on from where the filler got to (the session's timestamps start there).
    assert_eq!(first_frame.1, 0);
    let video = tags
        .iter()
        .filter(|tag| tag.0 == 9 && tag.2[1] == 1)
        .count();
    assert!((11..=13).contains(&video), "{video} frames for 400 ms");
}

#[test]
fn a_fragment_cut_short_sends_no_zeros_as_samples() {
    // The second media segment's mdat lost its last bytes; fmp4-timeline completes it with
    // zeros (for a byte stream's sake) and then fails the fragment.
    let second = media_segment_at(1);
    let cut = second.len() - 6;
    let completed = [&second[..cut], &[0; 6][..]].concat();
    let file = [init_segment(), media_segment(), completed].concat();
    let mut stage = Fmp4ToFlvStage::default();
    let mut output = StageOutput::default();
    stage.begin_fragment(&fragment(1), &mut output).unwrap();
    stage
        .process_chunk(bytes::Bytes::from(file), &mut output)
        .unwrap();
    stage.abort_fragment();
    let stream = joined(&output.drain().collect::<Vec<_>>());
    // The first segment's samples went out; none of the second's (at 1 s).
    let timestamps: Vec<u32> = tags_of(&stream)
        .iter()
        .filter(|tag| tag.2[1] == 1)
        .map(|tag| tag.1)
        .collect();
    assert_eq!(timestamps, vec![0, 0, 21, 33]);
    // A whole fragment writes the last segment's tags when it ends.
    let mut stage = Fmp4ToFlvStage::default();
    let whole = [init_segment(), media_segment(), media_segment_at(1)].concat();
    let (items, result) = run_stage(&mut stage, &fragment(1), &whole, &[usize::MAX]);
    result.unwrap();
    let media = tags_of(&joined(&items))
        .iter()
        .filter(|tag| tag.2[1] == 1)
        .count();
    assert_eq!(media, 8);
}

#[test]
fn a_fragment_resumed_from_inside_starts_at_its_last_keyframe_before_the_point_with_its_headers() {
    // Keyframes at 0, 1 and 2 s; confirmed up to 1.5 s: sent again from the one at 1 s.
    let file = [
        init_segment(),
        media_segment_at(0),
        media_segment_at(1),
        media_segment_at(2),
    ]
    .concat();
    for split in [5, usize::MAX] {
        let mut stage = Fmp4ToFlvStage::default();
        stage.resume_fragment(Duration::from_millis(1500));
        let (items, result) = run_stage(&mut stage, &fragment(1), &file, &[split]);
        result.unwrap();
        assert_eq!(
            media_times(&items)[0],
            Duration::from_secs(1),
            "split {split}"
        );
        let tags = tags_of(&joined(&items));
        // The sequence headers, then the keyframe at 1 s as the session's time 0.
        assert_eq!(tags[0].2[..2], [0x17, 0], "split {split}");
        assert_eq!(tags[1].2[..2], [0xaf, 0]);
        assert_eq!((tags[2].0, tags[2].1), (9, 0));
        assert_eq!(tags[2].2[..5], [0x17, 1, 0, 0, 67]);
        // The rest follows whole: two segments of two video and two audio samples each.
        assert_eq!(tags.len(), 2 + 8, "split {split}");

        // Resumed past its last keyframe: from that keyframe, nothing after it skipped.
        let mut stage = Fmp4ToFlvStage::default();
        stage.resume_fragment(Duration::from_secs(10));
        let (items, result) = run_stage(&mut stage, &fragment(1), &file, &[split]);
        result.unwrap();
        let tags = tags_of(&joined(&items));
        assert_eq!(tags.len(), 2 + 4, "split {split}");
        assert_eq!(tags[2].2[..5], [0x17, 1, 0, 0, 67]);
    }
}

#[test]
fn a_new_session_reads_the_init_segment_sent_again_between_fragments() {
    let mut stage = Fmp4ToFlvStage::default();
    let first = [init_segment(), media_segment()].concat();
    let (_, result) = run_stage(&mut stage, &fragment(1), &first, &[usize::MAX]);
    result.unwrap();

    // A reconnect: fmp4-timeline sends its init segment again before the next fragment.
    let mut output = StageOutput::default();
    stage.start_session(&mut output).unwrap();
    for part in init_segment().chunks(7) {
        stage
            .process_chunk(Bytes::copy_from_slice(part), &mut output)
            .unwrap();
    }
    let (items, result) = run_stage(&mut stage, &fragment(2), &media_segment_at(5), &[64]);
    result.unwrap();
    let stream = joined(&items);
    assert_eq!(stream[..9], FILE_HEADER, "a file header first");
    let tags = tags_of(&stream);
    assert_eq!(tags[0].2[..2], [0x17, 0], "the video sequence header");
    assert_eq!(tags[1].2[..2], [0xaf, 0], "the audio sequence header");
    let timestamps: Vec<u32> = tags.iter().map(|tag| tag.1).collect();
    assert_eq!(timestamps, [0, 0, 0, 0, 21, 33]);

    // What begins a session must be whole by the next fragment.
    stage.start_session(&mut output).unwrap();
    let init = init_segment();
    stage
        .process_chunk(Bytes::copy_from_slice(&init[..init.len() - 5]), &mut output)
        .unwrap();
    let (_, result) = run_stage(&mut stage, &fragment(3), &media_segment_at(6), &[64]);
    let error = result.unwrap_err().to_string();
    assert!(error.contains("what began the new session"), "{error}");
}

/// The stage, once the filler clip it is making is made: fills in these tests expect it.
fn made(stage: &mut Fmp4ToFlvStage) -> &mut Fmp4ToFlvStage {
    stage.format_mut().filler.wait_until_made();
    stage
}
