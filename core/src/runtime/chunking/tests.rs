//! The chunking stage end to end: order, content, the byte budget, unreadable fragments.

use bytes::Bytes;

use super::*;
use crate::fragment::{FragmentBody, FragmentDelivery, FragmentInfo, FragmentOutcome};
use crate::units::ByteSize;

fn fragment(sequence: u64, body: FragmentBody) -> (Fragment, FragmentDelivery) {
    let info = FragmentInfo {
        sequence,
        name: format!("f{sequence}"),
        length: None,
    };
    Fragment::new(info, body)
}

/// Collects everything the stage emits, as (sequence, bytes) per fragment.
async fn collect(mut events: mpsc::Receiver<ChunkEvent>) -> Vec<(u64, Vec<u8>)> {
    let mut fragments = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            ChunkEvent::Begin(fragment) => fragments.push((fragment.info.sequence, Vec::new())),
            ChunkEvent::Chunk(chunk) => {
                fragments
                    .last_mut()
                    .unwrap()
                    .1
                    .extend_from_slice(match &chunk.data {
                        ChunkData::Bytes(bytes) => bytes,
                        ChunkData::File(_) => panic!("no file ranges were asked for"),
                    })
            }
            ChunkEvent::End => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    fragments
}

#[tokio::test]
async fn a_file_partly_out_of_the_page_cache_reads_whole_and_in_order() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("file.bin");
    let file_bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &file_bytes).unwrap();
    // Its second half leaves the page cache (written back first, so it can): those chunks
    // come from the blocking reader, the first half's from the page cache.
    let file = std::fs::File::open(&path).unwrap();
    file.sync_all().unwrap();
    rustix::fs::fadvise(&file, 1_500_000, None, rustix::fs::Advice::DontNeed).unwrap();

    let (fragment_tx, fragment_rx) = mpsc::channel(4);
    let (event_tx, event_rx) = mpsc::channel(4);
    let stage = ChunkingStage::new(ChunkSize::Fixed(ByteSize(65_536)), 262_144);
    tokio::spawn(stage.run(fragment_rx, event_tx));
    let (whole, _) = fragment(1, FragmentBody::File(path));
    fragment_tx.send(whole).await.unwrap();
    drop(fragment_tx);
    let fragments = collect(event_rx).await;
    assert_eq!(fragments.len(), 1);
    assert!(
        fragments[0].1 == file_bytes,
        "the bytes read differ from the file's"
    );
}

#[tokio::test]
async fn chunks_preserve_order_and_content() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("file.bin");
    let file_bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &file_bytes).unwrap();

    let (fragment_tx, fragment_rx) = mpsc::channel(4);
    let (event_tx, event_rx) = mpsc::channel(4);
    let stage = ChunkingStage::new(ChunkSize::Fixed(ByteSize(1000)), 3000);
    tokio::spawn(stage.run(fragment_rx, event_tx));
    let (first, _) = fragment(1, FragmentBody::File(path));
    let (second, _) = fragment(2, FragmentBody::Memory(Bytes::from_static(b"hello world")));
    let (third, _) = fragment(3, FragmentBody::Reader(Box::new(&b"from a reader"[..])));
    fragment_tx.send(first).await.unwrap();
    fragment_tx.send(second).await.unwrap();
    fragment_tx.send(third).await.unwrap();
    drop(fragment_tx);

    let fragments = collect(event_rx).await;
    assert_eq!(fragments[0], (1, file_bytes));
    assert_eq!(fragments[1], (2, b"hello world".to_vec()));
    assert_eq!(fragments[2], (3, b"from a reader".to_vec()));
}

// Paused time: a sleep ends only once every task waits, so the stage has gone as far as its
// budget lets it (memory bodies are read on the runtime, not on blocking threads).
#[tokio::test(start_paused = true)]
async fn bytes_in_flight_never_exceed_the_budget() {
    let (fragment_tx, fragment_rx) = mpsc::channel(4);
    let (event_tx, mut event_rx) = mpsc::channel(1000);
    let stage = ChunkingStage::new(ChunkSize::Fixed(ByteSize(100)), 300);
    tokio::spawn(stage.run(fragment_rx, event_tx));
    let (big, _) = fragment(1, FragmentBody::Memory(Bytes::from(vec![7u8; 10_000])));
    fragment_tx.send(big).await.unwrap();

    // Nobody consumes: the stage must stop after 3 chunks (300 bytes) although the event
    // queue has room for 1000 events.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut held = Vec::new();
    while let Ok(event) = event_rx.try_recv() {
        held.push(event);
    }
    let chunks = held
        .iter()
        .filter(|event| matches!(event, ChunkEvent::Chunk(_)))
        .count();
    assert_eq!(chunks, 3);

    // Releasing the chunks lets it go on.
    held.clear();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let more = std::iter::from_fn(|| event_rx.try_recv().ok())
        .filter(|event| matches!(event, ChunkEvent::Chunk(_)))
        .count();
    assert_eq!(more, 3);
}

#[tokio::test]
async fn a_missing_file_is_unreadable_and_the_next_fragment_goes_on() {
    let (fragment_tx, fragment_rx) = mpsc::channel(4);
    let (event_tx, mut event_rx) = mpsc::channel(16);
    tokio::spawn(ChunkingStage::new(ChunkSize::Fixed(ByteSize(64)), 64).run(fragment_rx, event_tx));
    let (missing, delivery) = fragment(1, FragmentBody::File("/nonexistent/streampub".into()));
    let (present, _) = fragment(2, FragmentBody::Memory(Bytes::from_static(b"ok")));
    fragment_tx.send(missing).await.unwrap();
    fragment_tx.send(present).await.unwrap();
    drop(fragment_tx);

    match event_rx.recv().await.unwrap() {
        ChunkEvent::Unreadable(fragment, reason, message) => {
            assert_eq!(reason, "unreadable");
            assert!(message.contains("/nonexistent/streampub"), "{message}");
            fragment.acknowledge(FragmentOutcome::Failed(message.into()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(delivery.await, FragmentOutcome::Failed(_)));
    assert!(matches!(event_rx.recv().await, Some(ChunkEvent::Begin(_))));
}

#[tokio::test]
async fn file_ranges_cover_a_file_within_the_budget_and_other_bodies_stay_bytes() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("file.bin");
    std::fs::write(&path, vec![7u8; 2500]).unwrap();
    let (fragment_tx, fragment_rx) = mpsc::channel(4);
    let (event_tx, mut event_rx) = mpsc::channel(16);
    let stage = ChunkingStage::new(ChunkSize::Fixed(ByteSize(1000)), 2000).with_file_ranges(true);
    tokio::spawn(stage.run(fragment_rx, event_tx));
    fragment_tx
        .send(fragment(1, FragmentBody::File(path)).0)
        .await
        .unwrap();
    fragment_tx
        .send(fragment(2, FragmentBody::Memory(Bytes::from_static(b"memory"))).0)
        .await
        .unwrap();
    drop(fragment_tx);
    let mut ranges = Vec::new();
    let mut bytes = Vec::new();
    while let Some(event) = event_rx.recv().await {
        if let ChunkEvent::Chunk(chunk) = event {
            match chunk.into_parts().0 {
                ChunkData::File(range) => ranges.push((range.offset, range.length)),
                ChunkData::Bytes(data) => bytes.extend_from_slice(&data),
            }
        }
    }
    assert_eq!(ranges, [(0, 1000), (1000, 1000), (2000, 500)]);
    assert_eq!(bytes, b"memory");
}

/// A remote body made of bytes in memory that counts the bytes each read asks for.
struct CountingRemote {
    bytes: Bytes,
    asked: std::sync::Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl crate::fragment::RemoteBody for CountingRemote {
    fn length(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn describe(&self) -> String {
        "test://remote".to_owned()
    }

    async fn read(self: std::sync::Arc<Self>, offset: u64, max: usize) -> std::io::Result<Bytes> {
        self.asked.lock().unwrap().push(max);
        let start = offset as usize;
        Ok(self.bytes.slice(start..(start + max).min(self.bytes.len())))
    }
}

#[tokio::test]
async fn a_remote_body_is_read_a_chunk_at_a_time_whole_and_in_order() {
    let remote_bytes: Bytes = (0..10_500u32).map(|i| (i % 249) as u8).collect();
    let remote = std::sync::Arc::new(CountingRemote {
        bytes: remote_bytes.clone(),
        asked: std::sync::Mutex::new(Vec::new()),
    });
    let (fragment_tx, fragment_rx) = mpsc::channel(4);
    let (event_tx, event_rx) = mpsc::channel(4);
    let stage = ChunkingStage::new(ChunkSize::Fixed(ByteSize(1000)), 3000);
    tokio::spawn(stage.run(fragment_rx, event_tx));
    let (whole, _) = fragment(1, FragmentBody::Remote(remote.clone()));
    fragment_tx.send(whole).await.unwrap();
    drop(fragment_tx);
    let fragments = collect(event_rx).await;
    assert_eq!(fragments, vec![(1, remote_bytes.to_vec())]);
    let asked = remote.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 11, "one read per chunk: {asked:?}");
    assert!(asked.iter().all(|&max| max <= 1000), "{asked:?}");
}
