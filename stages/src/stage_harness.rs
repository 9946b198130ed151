//! Running a stage over whole files in tests: chunk boundaries anywhere, what came out.

use bytes::Bytes;
use streampub_core::stage::StageItem;
use streampub_core::{FragmentInfo, Stage, StageError, StageOutput};

/// Runs `file` through `stage` as `fragment`, in chunks of the given sizes (cycled); returns
/// what the stage produced and the result of the fragment (aborted on failure, as the runtime
/// does).
pub(crate) fn run_file(
    stage: &mut dyn Stage,
    fragment: &FragmentInfo,
    file: &[u8],
    splits: &[usize],
) -> (Vec<StageItem>, Result<(), StageError>) {
    let mut output = StageOutput::default();
    let result = (|| {
        stage.begin_fragment(fragment, &mut output)?;
        let bytes = Bytes::copy_from_slice(file);
        let mut at = 0;
        let mut split = splits.iter().cycle();
        while at < bytes.len() {
            let size = (*split.next().unwrap()).max(1).min(bytes.len() - at);
            stage.process_chunk(bytes.slice(at..at + size), &mut output)?;
            at += size;
        }
        stage.end_fragment(&mut output)
    })();
    if result.is_err() {
        stage.abort_fragment();
    }
    (output.drain().collect(), result)
}

/// The bytes of the chunks among `items`, joined.
pub(crate) fn joined(items: &[StageItem]) -> Vec<u8> {
    items
        .iter()
        .filter_map(|item| match item {
            StageItem::Chunk(chunk) => Some(chunk.to_vec()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

/// Feeds a new `S` `rounds` damaged versions of `good` (random bytes, `good` cut short,
/// `good` with bytes changed, some after a piece of `good`), each followed by `good` itself,
/// in chunks of random sizes. Whatever it makes of them, it must not panic.
pub(crate) fn feed_damaged_copies<S: Stage + Default>(good: &[u8], rounds: usize) {
    let mut random = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let fragment = |sequence: u64| FragmentInfo {
        sequence,
        name: format!("damaged-{sequence}"),
        length: None,
    };
    for round in 0..rounds {
        let mut input = match round % 3 {
            0 => (0..(next() % 400))
                .map(|_| next() as u8)
                .collect::<Vec<u8>>(),
            1 => good[..(next() as usize % good.len())].to_vec(),
            _ => {
                let mut damaged = good.to_vec();
                for _ in 0..=(next() % 6) {
                    let at = next() as usize % damaged.len();
                    damaged[at] = next() as u8;
                }
                damaged
            }
        };
        if round % 5 == 0 {
            input.splice(0..0, good[..good.len().min(200)].iter().copied());
        }
        let mut stage = S::default();
        let splits = [(next() % 50) as usize + 1];
        let _ = run_file(&mut stage, &fragment(1), &input, &splits);
        let _ = run_file(&mut stage, &fragment(2), good, &splits);
    }
}

/// The media times a stage marked for pacing, in order.
pub(crate) fn media_times(items: &[StageItem]) -> Vec<std::time::Duration> {
    items
        .iter()
        .filter_map(|item| match item {
            StageItem::MediaTime(time) => Some(*time),
            _ => None,
        })
        .collect()
}

/// One second of H.264 baseline (whose avcC differs from the filler's, which is High) at
/// 320x180, 25 fps, and AAC-LC 44.1 kHz stereo, made by ffmpeg as `format`, with `extra`
/// options of its muxer.
pub(crate) fn ffmpeg_media(format: &str, extra: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x180:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "1", "-c:v", "libx264", "-profile:v", "baseline"])
        .args(["-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac", "-ac", "2"])
        .args(extra)
        .args(["-f", format, "pipe:1"])
        .output()
        .expect("ffmpeg not found; run scripts/test, which installs it");
    assert!(output.status.success());
    output.stdout
}
