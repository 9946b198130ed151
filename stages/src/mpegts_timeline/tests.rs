//! Tests of the MPEG-TS timeline stage on synthetic transport streams built here.

use std::collections::HashMap;

use streampub_core::plugin::StageItem;

use super::*;
use crate::formats::mpegts::*;
use crate::stage_harness::{self, joined};

const PMT: u16 = 0x1000;
const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;

/// A packet: header, an adaptation field (with a PCR if given) when needed, the payload, and
/// stuffing.
fn packet(pid: u16, start: bool, pcr: Option<u64>, payload: &[u8]) -> [u8; PACKET_LEN] {
    let mut bytes = vec![
        SYNC_BYTE,
        ((pid >> 8) as u8) | if start { 0x40 } else { 0 },
        pid as u8,
    ];
    let room = PACKET_LEN - 4 - payload.len();
    if pcr.is_some() || room > 0 {
        bytes.push(0x30);
        let length = room - 1;
        bytes.push(length as u8);
        if length > 0 {
            let mut field = vec![0xffu8; length];
            field[0] = 0;
            if let Some(pcr) = pcr {
                field[0] = 0x10;
                let mut base = [0u8; 6];
                write_pcr_base(&mut base, 0, pcr);
                base[4] |= 0x7e;
                field[1..7].copy_from_slice(&base);
            }
            bytes.extend(field);
        }
    } else {
        bytes.push(0x10);
    }
    bytes.extend_from_slice(payload);
    bytes.try_into().unwrap()
}

fn section(table: &[u8]) -> Vec<u8> {
    // Pointer field, then the table with a fake CRC.
    [&[0u8][..], table, &[0, 0, 0, 0]].concat()
}

fn pat() -> [u8; PACKET_LEN] {
    let table = [
        0x00,
        0xb0,
        13,
        0,
        1,
        0xc1,
        0,
        0,
        0,
        1,
        0xe0 | (PMT >> 8) as u8,
        PMT as u8,
    ];
    packet(PAT_PID, true, None, &section(&table))
}

fn pmt(audio_type: u8) -> [u8; PACKET_LEN] {
    let table = [
        0x02,
        0xb0,
        23,
        0,
        1,
        0xc1,
        0,
        0,
        0xe1,
        VIDEO as u8,
        0xf0,
        0, //
        0x1b,
        0xe1,
        VIDEO as u8,
        0xf0,
        0, //
        audio_type,
        0xe1,
        AUDIO as u8,
        0xf0,
        0,
    ];
    packet(PMT, true, None, &section(&table))
}

/// A PES start with a PTS.
fn pes(pid: u16, pts: u64, marker: u8) -> [u8; PACKET_LEN] {
    let mut header = vec![
        0,
        0,
        1,
        if pid == VIDEO { 0xe0 } else { 0xc0 },
        0,
        0,
        0x80,
        0x80,
        5,
    ];
    let mut timestamp = [0x21, 0, 0, 0, 0];
    write_timestamp(&mut timestamp, 0, pts);
    header.extend(timestamp);
    header.extend([marker; 20]);
    packet(pid, true, None, &header)
}

/// A file as ffmpeg's muxer writes one: PAT, PMT, a PCR 0.7 s ahead of the first frame, then
/// five video frames 3600 ticks apart and audio packets 1920 ticks apart, from PTS `first`.
fn upstream_file(first: u64, marker: u8, audio_type: u8) -> Vec<u8> {
    let mut packets = vec![
        pat(),
        pmt(audio_type),
        packet(VIDEO, false, Some(first - 63_000), &[]),
    ];
    for frame in 0..5u64 {
        packets.push(pes(VIDEO, first + frame * 3600, marker));
        packets.push(pes(AUDIO, first + frame * 3840, marker));
        packets.push(pes(AUDIO, first + frame * 3840 + 1920, marker));
    }
    packets.concat()
}

fn info(sequence: u64) -> FragmentInfo {
    FragmentInfo {
        sequence,
        name: format!("batch-{sequence}.ts"),
        length: None,
    }
}

/// Runs `file` through the stage as fragment `sequence`, in chunks of `split` bytes.
fn run_file(
    stage: &mut MpegtsTimelineStage,
    sequence: u64,
    file: &[u8],
    split: usize,
) -> (Vec<StageItem>, Result<(), StageError>) {
    stage_harness::run_stage(stage, &info(sequence), file, &[split])
}

/// Per PID of the output: PTS values, PCR values, and whether continuity counters run on.
fn read_stream(stream: &[u8]) -> (HashMap<u16, Vec<u64>>, Vec<u64>, bool) {
    let (mut pts, mut pcrs, mut counters) = (HashMap::new(), Vec::new(), HashMap::new());
    let mut continuous = true;
    for chunk in stream.chunks(PACKET_LEN) {
        let packet: [u8; PACKET_LEN] = chunk.try_into().unwrap();
        let header = PacketHeader::parse(&packet);
        if header.has_payload {
            let counter = packet[3] & 0x0f;
            if let Some(previous) = counters.insert(header.pid, counter) {
                continuous &= counter == (previous + 1) & 0x0f;
            }
        }
        if let Some(at) = pcr_position(&header, &packet) {
            pcrs.push(read_pcr_base(&packet, at));
        }
        let payload = header.payload_offset(&packet);
        if let (true, Some(payload)) = (header.payload_start, payload) {
            if let Some((Some(at), _)) = pes_timestamp_positions(&packet, payload) {
                pts.entry(header.pid)
                    .or_insert_with(Vec::new)
                    .push(read_timestamp(&packet, at));
            }
        }
    }
    (pts, pcrs, continuous)
}

#[test]
fn files_join_onto_one_clock_with_continuous_counters() {
    let mut stage = MpegtsTimelineStage::default();
    let mut stream = Vec::new();
    let mut spans = Vec::new();
    // Each file's clock starts anew (ffmpeg starts at 1.4 s); the third near the 33-bit wrap.
    for (sequence, first) in [(1, 126_000), (2, 126_000), (3, TIMESTAMP_MODULUS - 5000)] {
        let (items, result) = run_file(
            &mut stage,
            sequence,
            &upstream_file(first, sequence as u8, 0x0f),
            100,
        );
        result.unwrap();
        if let Some(StageItem::MediaSpan(span)) = items.last() {
            spans.push((span.start, span.end));
        }
        stream.extend(joined(&items));
    }
    let (pts, pcrs, continuous) = read_stream(&stream);
    assert!(continuous, "continuity counters run on across files");
    // Each file lasts until its last audio packet plus one interval: 4 × 3840 + 1920 + 1920.
    let file = 19_200;
    let video = &pts[&VIDEO];
    assert_eq!(
        video[..6],
        [126_000, 129_600, 133_200, 136_800, 140_400, 126_000 + file]
    );
    assert!(video.windows(2).all(|pair| pair[0] < pair[1]), "{video:?}");
    assert!(pts[&AUDIO].windows(2).all(|pair| pair[0] < pair[1]));
    assert!(pcrs.windows(2).all(|pair| pair[0] < pair[1]), "{pcrs:?}");
    assert_eq!(pcrs[0], 126_000 - 63_000);
    let ticks = |value: u64| Duration::from_nanos(value * 1_000_000_000 / 90_000);
    assert_eq!(spans[1], (ticks(126_000 + file), ticks(126_000 + 2 * file)));
}

#[test]
fn output_is_identical_whatever_the_chunk_boundaries() {
    let outputs: Vec<Vec<u8>> = [1, 7, 188, 500, 100_000]
        .iter()
        .map(|split| {
            let mut stage = MpegtsTimelineStage::default();
            (1..=2u8)
                .flat_map(|marker| {
                    let (items, result) = run_file(
                        &mut stage,
                        u64::from(marker),
                        &upstream_file(126_000, marker, 0x0f),
                        *split,
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
fn other_streams_start_a_new_session() {
    let mut stage = MpegtsTimelineStage::default();
    run_file(&mut stage, 1, &upstream_file(126_000, 1, 0x0f), 188)
        .1
        .unwrap();
    // AAC (0x0f) becomes AC-3 (0x81).
    let (items, result) = run_file(&mut stage, 2, &upstream_file(126_000, 2, 0x81), 188);
    result.unwrap();
    let change = items
        .iter()
        .find_map(|item| match item {
            StageItem::NewSession { change } => Some(change.clone()),
            _ => None,
        })
        .expect("a new session");
    assert!(change.contains("batch-2.ts"), "{change}");
}

#[test]
fn bad_files_fail_alone_with_what_is_wrong() {
    let good = upstream_file(126_000, 1, 0x0f);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not ts",
            vec![0u8; 376],
            "does not begin with the sync byte",
        ),
        (
            "cut",
            good[..good.len() - 10].to_vec(),
            "bytes into the packet at offset",
        ),
        (
            "no timestamps",
            [pat(), pmt(0x0f)].concat(),
            "no PES timestamp",
        ),
    ];
    for (what, file, expected) in cases {
        let mut stage = MpegtsTimelineStage::default();
        let (_, result) = run_file(&mut stage, 1, &file, 100);
        let error = result.expect_err(what);
        assert!(
            error.message.contains(expected),
            "{what}: {}",
            error.message
        );
        assert!(
            error.message.contains("batch-1.ts"),
            "{what}: {}",
            error.message
        );
        run_file(&mut stage, 2, &good, 100).1.unwrap();
    }
}

#[test]
fn a_rewind_and_a_restore_continue_the_clock() {
    let mut stage = MpegtsTimelineStage::default();
    for marker in 1..=2u8 {
        run_file(
            &mut stage,
            u64::from(marker),
            &upstream_file(126_000, marker, 0x0f),
            188,
        )
        .1
        .unwrap();
    }
    stage.rewind(&info(2));
    let (items, result) = run_file(&mut stage, 2, &upstream_file(126_000, 2, 0x0f), 188);
    result.unwrap();
    assert_eq!(read_stream(&joined(&items)).0[&VIDEO][0], 126_000 + 19_200);

    let mut restored = MpegtsTimelineStage::default();
    restored.restore(stage.checkpoint().unwrap()).unwrap();
    let (items, result) = run_file(&mut restored, 3, &upstream_file(126_000, 3, 0x0f), 188);
    result.unwrap();
    assert_eq!(
        read_stream(&joined(&items)).0[&VIDEO][0],
        126_000 + 2 * 19_200
    );
}

#[test]
fn random_and_damaged_input_never_panics() {
    stage_harness::feed_damaged_copies::<MpegtsTimelineStage>(
        &upstream_file(126_000, 1, 0x0f),
        3000,
    );
}

#[test]
fn every_pes_is_marked_with_its_time_for_pacing_also_across_the_33_bit_wrap() {
    let mut stage = MpegtsTimelineStage::default();
    let mut previous_end = Duration::ZERO;
    for (sequence, first) in [(1, 126_000), (2, 126_000), (3, TIMESTAMP_MODULUS - 5000)] {
        let (items, result) = run_file(
            &mut stage,
            sequence,
            &upstream_file(first, sequence as u8, 0x0f),
            100,
        );
        result.unwrap();
        let marks = stage_harness::media_times(&items);
        let Some(StageItem::MediaSpan(span)) = items.last() else {
            panic!("no media span");
        };
        // The file's start, then one mark per PES (five video, ten audio), inside the file's
        // span, unwrapped.
        assert_eq!(marks.len(), 16, "{marks:?}");
        assert_eq!(marks[0], span.start);
        assert!(marks
            .iter()
            .all(|time| *time >= span.start && *time < span.end));
        assert!(span.start >= previous_end);
        previous_end = span.end;
    }
}

#[test]
fn spans_and_marks_go_on_past_the_33_bit_wrap_of_the_output_clock() {
    // A stream restored 26.5 hours in, 10,000 ticks before its clock wraps.
    let mut stage = MpegtsTimelineStage::default();
    stage
        .restore(serde_json::json!({
            "offset_ticks": TIMESTAMP_MODULUS - 10_000,
            "continuity": {},
        }))
        .unwrap();
    let mut ends = Vec::new();
    for sequence in 1..=2 {
        let (items, result) = run_file(
            &mut stage,
            sequence,
            &upstream_file(126_000, sequence as u8, 0x0f),
            100,
        );
        result.unwrap();
        let marks = stage_harness::media_times(&items);
        let Some(StageItem::MediaSpan(span)) = items.last() else {
            panic!("no media span");
        };
        assert!(marks.iter().all(|time| *time >= span.start));
        ends.push(span.end);
    }
    let wrap = Duration::from_nanos(TIMESTAMP_MODULUS * 1_000_000_000 / 90_000);
    assert!(ends[0] > wrap && ends[1] > ends[0], "{ends:?} vs {wrap:?}");
}

// ---- filler -------------------------------------------------------------------------------

const STREAM_PMT: u16 = 0x1100;
const STREAM_VIDEO: u16 = 0x200;
const STREAM_AUDIO: u16 = 0x201;

/// A second of media as MPEG-TS on other PIDs than ffmpeg's defaults (which the filler clip
/// has).
fn real_file() -> Vec<u8> {
    let (pmt, video) = (STREAM_PMT.to_string(), STREAM_VIDEO.to_string());
    stage_harness::ffmpeg_media(
        "mpegts",
        &["-mpegts_pmt_start_pid", &pmt, "-mpegts_start_pid", &video],
    )
}

fn filler_stage() -> MpegtsTimelineStage {
    MpegtsTimelineStage::default().with_filler(FillerSource::Generate, "ffmpeg".into())
}

fn span_end(items: &[StageItem]) -> Duration {
    items
        .iter()
        .find_map(|item| match item {
            StageItem::MediaSpan(span) => Some(span.end),
            _ => None,
        })
        .expect("a whole file marks its span")
}

fn fill(stage: &mut MpegtsTimelineStage, until: Duration) -> Vec<u8> {
    let mut output = StageOutput::default();
    made(stage).fill(until, &mut output).unwrap();
    joined(&output.drain().collect::<Vec<_>>())
}

#[test]
fn a_gap_is_filled_with_packets_on_the_stream_s_pids_and_its_clock() {
    let file = real_file();
    let mut stage = filler_stage();
    let (items, result) = run_file(&mut stage, 1, &file, 4096);
    result.unwrap();
    let end = span_end(&items);
    let mut stream = joined(&items);
    // Upstream is late by 1.2 s, filled in 200-ms steps.
    let until = end + Duration::from_millis(1200);
    for step in 1..=6 {
        stream.extend(fill(&mut stage, end + Duration::from_millis(200 * step)));
    }
    let (items, result) = run_file(&mut stage, 2, &file, 4096);
    result.unwrap();
    stream.extend(joined(&items));

    let (pts, _, continuous) = read_stream(&stream);
    assert!(continuous, "continuity counters run on through the filler");
    let mut pids: Vec<u16> = pts.keys().copied().collect();
    pids.sort_unstable();
    assert_eq!(
        pids,
        vec![STREAM_VIDEO, STREAM_AUDIO],
        "the filler is on the stream's PIDs"
    );
    for packet in stream.chunks(PACKET_LEN) {
        let pid = PacketHeader::parse(packet.try_into().unwrap()).pid;
        assert!(
            [PAT_PID, STREAM_PMT, STREAM_VIDEO, STREAM_AUDIO, 0x11].contains(&pid),
            "PID {pid:#x}"
        );
    }
    // 25 frames, 30 of filler (1.2 s at 25 fps) from where the first file ended (its audio
    // lasts a little longer than its video), then 25 frames from where the filler was filled
    // to.
    let video = &pts[&STREAM_VIDEO];
    assert_eq!(video.len(), 25 + 30 + 25, "{video:?}");
    assert!(video.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(video[25] - video[24] < 9000);
    assert!(video[26..55]
        .windows(2)
        .all(|pair| pair[1] - pair[0] == 3600));
    let second_start =
        Duration::from_nanos((video[55] - video[0]) * 1_000_000_000 / TICKS_PER_SECOND);
    assert!(
        second_start >= until - Duration::from_millis(1400 + 100),
        "the second file starts {second_start:?} after the first, filled to {until:?}"
    );
    // The filler's first video packet is a keyframe.
    let filler_start = stream
        .chunks(PACKET_LEN)
        .filter(|packet| PacketHeader::parse((*packet).try_into().unwrap()).pid == STREAM_VIDEO)
        .filter(|packet| packet[1] & 0x40 != 0)
        .nth(25)
        .unwrap();
    assert!(random_access(filler_start));
}

#[test]
fn a_session_that_begins_in_a_gap_gets_the_program_tables_then_a_keyframe() {
    let mut stage = filler_stage();
    let (items, result) = run_file(&mut stage, 1, &real_file(), 4096);
    result.unwrap();
    let end = span_end(&items);
    fill(&mut stage, end + Duration::from_millis(500));
    let mut output = StageOutput::default();
    stage.start_session(&mut output).unwrap();
    let mut stream = joined(&output.drain().collect::<Vec<_>>());
    stream.extend(fill(&mut stage, end + Duration::from_millis(1000)));
    let pids: Vec<u16> = stream
        .chunks(PACKET_LEN)
        .map(|packet| PacketHeader::parse(packet.try_into().unwrap()).pid)
        .collect();
    assert_eq!(pids[..2], [PAT_PID, STREAM_PMT]);
    let first_video = stream
        .chunks(PACKET_LEN)
        .find(|packet| PacketHeader::parse((*packet).try_into().unwrap()).pid == STREAM_VIDEO)
        .unwrap();
    assert!(random_access(first_video));
}

#[test]
fn a_stream_no_filler_can_match_fails_each_fill_naming_why() {
    let mut stage = filler_stage();
    let mut output = StageOutput::default();
    let before = made(&mut stage)
        .fill(Duration::from_secs(1), &mut output)
        .unwrap_err();
    assert!(before.message.contains("no media"), "{}", before.message);
    // Synthetic PES data: no sequence parameter set.
    run_file(
        &mut stage,
        1,
        &upstream_file(90_000, 1, STREAM_TYPE_ADTS_AAC),
        188,
    )
    .1
    .unwrap();
    let error = made(&mut stage)
        .fill(Duration::from_secs(5), &mut output)
        .unwrap_err();
    assert!(
        error.message.contains("no filler can be made")
            && error.message.contains("sequence parameter set"),
        "{}",
        error.message
    );
    // MP3 audio cannot be matched either.
    let mut stage = filler_stage();
    run_file(&mut stage, 1, &upstream_file(90_000, 1, 0x03), 188)
        .1
        .unwrap();
    let error = made(&mut stage)
        .fill(Duration::from_secs(5), &mut output)
        .unwrap_err();
    assert!(error.message.contains("0x03"), "{}", error.message);
}

#[test]
fn a_session_that_carried_its_limit_ends_at_the_next_file_with_the_tables_first() {
    // Files last 5 × 3840 ticks of audio (0.21 s): the third begins 0.43 s into the session.
    let mut stage = MpegtsTimelineStage::default().with_session_limit(Duration::from_millis(300));
    for (sequence, first) in [(1, 90_000), (2, 900_000), (3, 180_000)] {
        let (items, result) = run_file(
            &mut stage,
            sequence,
            &upstream_file(first, sequence as u8, STREAM_TYPE_ADTS_AAC),
            188,
        );
        result.unwrap();
        let new_session = items
            .iter()
            .position(|item| matches!(item, StageItem::NewSession { .. }));
        if sequence < 3 {
            assert_eq!(new_session, None, "file {sequence}");
            continue;
        }
        assert_eq!(new_session, Some(0));
        let stream = joined(&items);
        let pids: Vec<u16> = stream
            .chunks(PACKET_LEN)
            .map(|packet| PacketHeader::parse(packet.try_into().unwrap()).pid)
            .collect();
        assert_eq!(pids[..2], [PAT_PID, PMT]);
    }
}

/// Per PES of the output, in order: its PID, its time mark, and whether it is a keyframe.
fn pes_starts(items: &[StageItem]) -> Vec<(u16, Duration, bool)> {
    let mut starts = Vec::new();
    let mut time = None;
    for item in items {
        match item {
            StageItem::MediaTime(marked) => time = Some(*marked),
            StageItem::Chunk(chunk) => {
                for packet in chunk.chunks(PACKET_LEN) {
                    let header = PacketHeader::parse(packet.try_into().unwrap());
                    if header.payload_start && [STREAM_VIDEO, STREAM_AUDIO].contains(&header.pid) {
                        let time = time.take().expect("a PES start is marked");
                        starts.push((header.pid, time, random_access(packet)));
                    }
                }
            }
            _ => {}
        }
    }
    starts
}

#[test]
fn a_file_resumed_from_inside_starts_at_its_last_keyframe_before_the_point() {
    let (pmt, video) = (STREAM_PMT.to_string(), STREAM_VIDEO.to_string());
    // A keyframe every 200 ms.
    let file = stage_harness::ffmpeg_media(
        "mpegts",
        &[
            "-mpegts_pmt_start_pid",
            &pmt,
            "-mpegts_start_pid",
            &video,
            "-g",
            "5",
        ],
    );
    let (whole, result) = run_file(&mut MpegtsTimelineStage::default(), 1, &file, 4096);
    result.unwrap();
    let whole = pes_starts(&whole);
    let first = whole[0].1;
    let keyframes: Vec<Duration> = whole
        .iter()
        .filter(|(pid, _, key)| *pid == STREAM_VIDEO && *key)
        .map(|(_, time, _)| *time)
        .collect();
    assert!(keyframes.len() >= 4, "{keyframes:?}");
    let offset = keyframes[2] - first + Duration::from_millis(50);
    for split in [188 * 3 + 5, 4096] {
        let mut stage = MpegtsTimelineStage::default();
        stage.resume_fragment(offset);
        let (items, result) = run_file(&mut stage, 1, &file, split);
        result.unwrap();
        let (_, _, continuous) = read_stream(&joined(&items));
        assert!(continuous, "continuity counters run on over what was cut");
        let resumed = pes_starts(&items);
        assert_eq!(
            resumed[0],
            (STREAM_VIDEO, keyframes[2], true),
            "split {split}"
        );
        let expected: Vec<_> = whole
            .iter()
            .filter(|(_, time, _)| *time >= keyframes[2])
            .copied()
            .collect();
        assert_eq!(
            resumed, expected,
            "every PES from the keyframe on, split {split}"
        );
    }
}

/// The stage, once the filler clip it is making is made: fills in these tests expect it.
fn made(stage: &mut MpegtsTimelineStage) -> &mut MpegtsTimelineStage {
    stage.format_mut().clip.wait_until_made();
    stage
}
