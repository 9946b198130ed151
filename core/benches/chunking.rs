//! The chunking stage's throughput over an in-memory fragment, by chunk size:
//! `cargo bench -p streampub-core --features testing --bench chunking`.

use divan::counter::BytesCount;
use divan::Bencher;
use streampub_core::plugin::{ByteSize, Bytes, Fragment, FragmentBody, FragmentInfo};
use streampub_core::testing::{ChunkEvent, ChunkSize, ChunkingStage};
use tokio::sync::mpsc;

/// The fragment: 64 MiB, the order of a few 30 s batches.
const FRAGMENT_BYTES: usize = 64 << 20;

fn main() {
    divan::main();
}

#[divan::bench(args = [64 << 10, 256 << 10, 1 << 20])]
fn memory_fragment(bencher: Bencher, chunk_size: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = Bytes::from(vec![7u8; FRAGMENT_BYTES]);
    bencher
        .counter(BytesCount::new(FRAGMENT_BYTES))
        .bench_local(|| {
            runtime.block_on(async {
                let (fragment_tx, fragment_rx) = mpsc::channel(1);
                let (event_tx, mut event_rx) = mpsc::channel(64);
                let stage =
                    ChunkingStage::new(ChunkSize::Fixed(ByteSize(chunk_size)), 4 * chunk_size);
                let info = FragmentInfo {
                    sequence: 1,
                    name: "bench".into(),
                    length: Some(FRAGMENT_BYTES as u64),
                };
                let (fragment, _delivery) = Fragment::new(info, FragmentBody::Memory(body.clone()));
                fragment_tx.send(fragment).await.unwrap();
                drop(fragment_tx);
                let reader = tokio::spawn(stage.run(fragment_rx, event_tx));
                let mut total = 0;
                while let Some(event) = event_rx.recv().await {
                    if let ChunkEvent::Chunk(chunk) = event {
                        total += chunk.into_parts().0.len();
                    }
                }
                reader.await.unwrap();
                assert_eq!(total, FRAGMENT_BYTES);
            })
        });
}
