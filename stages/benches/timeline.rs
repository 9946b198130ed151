//! The `fmp4-timeline` stage's throughput over in-memory fragmented MP4 (the quick start's
//! sample fragments, fed again and again as one long stream), by chunk size:
//! `cargo bench -p streampub-stages --bench timeline`.

use divan::counter::BytesCount;
use divan::Bencher;
use std::path::Path;

use streampub_core::plugin::{Bytes, ComponentContext, FragmentInfo, StageConfig, StageOutput};
use streampub_stages::fmp4_timeline::Fmp4TimelineConfig;

const SAMPLES: [&[u8]; 3] = [
    include_bytes!("../../examples/fragments/batch-0.mp4"),
    include_bytes!("../../examples/fragments/batch-1.mp4"),
    include_bytes!("../../examples/fragments/batch-2.mp4"),
];
/// Fragments per iteration.
const ROUNDS: usize = 100;

fn main() {
    divan::main();
}

#[divan::bench(args = [4 << 10, 64 << 10, 256 << 10])]
fn fragmented_mp4(bencher: Bencher, chunk_size: usize) {
    let fragments: Vec<Bytes> = SAMPLES
        .iter()
        .map(|sample| Bytes::from_static(sample))
        .collect();
    let bytes: usize = (0..ROUNDS).map(|round| fragments[round % 3].len()).sum();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let context = ComponentContext::new("bench", Path::new("."));
    bencher.counter(BytesCount::new(bytes)).bench_local(|| {
        let mut stage = runtime
            .block_on(Fmp4TimelineConfig::default().build(&context))
            .expect("the stage builds");
        let mut output = StageOutput::default();
        let mut emitted = 0;
        for round in 0..ROUNDS {
            let info = FragmentInfo {
                sequence: round as u64 + 1,
                name: format!("batch-{round}.mp4"),
                length: None,
            };
            let fragment = &fragments[round % 3];
            stage.begin_fragment(&info, &mut output).unwrap();
            let mut offset = 0;
            while offset < fragment.len() {
                let end = (offset + chunk_size).min(fragment.len());
                stage
                    .process_chunk(fragment.slice(offset..end), &mut output)
                    .unwrap();
                offset = end;
            }
            stage.end_fragment(&mut output).unwrap();
            emitted += output.drain().count();
        }
        divan::black_box(emitted)
    });
}
