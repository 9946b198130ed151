use super::*;

async fn write_fragment(sink: &mut AppendFileSink, chunks: &[&'static [u8]]) {
    let info = FragmentInfo {
        sequence: 1,
        name: "f".into(),
        length: None,
    };
    sink.begin_fragment(&info).await.unwrap();
    for chunk in chunks {
        sink.write_chunk(Bytes::from_static(chunk)).await.unwrap();
    }
}

#[tokio::test]
async fn appends_across_restarts_and_rolls_back_aborted_fragments() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("out/archive.bin");
    let mut sink = AppendFileSink::new(path.clone(), true);
    assert!(!sink.resume(ResumeFrom::Nothing).await.unwrap());
    write_fragment(&mut sink, &[b"one", b"two"]).await;
    sink.end_fragment().await.unwrap();
    write_fragment(&mut sink, &[b"half"]).await;
    sink.abort_fragment().await.unwrap();
    sink.close().await.unwrap();

    let mut restarted = AppendFileSink::new(path.clone(), true);
    restarted.resume(ResumeFrom::Nothing).await.unwrap();
    write_fragment(&mut restarted, &[b"three"]).await;
    restarted.end_fragment().await.unwrap();
    restarted.close().await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"onetwothree");
}

#[tokio::test]
async fn a_restart_cuts_off_what_follows_the_saved_state_and_continues() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("archive.bin");
    let mut sink = AppendFileSink::new(path.clone(), true);
    assert!(!sink.resume(ResumeFrom::Start).await.unwrap());
    write_fragment(&mut sink, &[b"acknowledged"]).await;
    sink.end_fragment().await.unwrap();
    let saved = sink.checkpoint().unwrap();
    // A crash in the middle of the next fragment.
    write_fragment(&mut sink, &[b"cut sho"]).await;
    drop(sink);

    let mut restarted = AppendFileSink::new(path.clone(), true);
    assert!(restarted.resume(ResumeFrom::Saved(saved)).await.unwrap());
    write_fragment(&mut restarted, &[b"+next"]).await;
    restarted.end_fragment().await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"acknowledged+next");
    assert_eq!(
        restarted.checkpoint().unwrap(),
        serde_json::json!({"part": 0, "length": 17, "tail": hex::encode(b"acknowledged+next")})
    );
}

#[tokio::test]
async fn a_state_saved_before_the_first_byte_resumes_without_a_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("archive.bin");
    let mut sink = AppendFileSink::new(path.clone(), true);
    assert!(!sink.resume(ResumeFrom::Start).await.unwrap());
    let saved = sink.checkpoint().unwrap();
    drop(sink);

    let mut restarted = AppendFileSink::new(path.clone(), true);
    assert!(restarted.resume(ResumeFrom::Saved(saved)).await.unwrap());
    write_fragment(&mut restarted, &[b"first"]).await;
    restarted.end_fragment().await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
}

#[tokio::test]
async fn an_archive_that_does_not_match_its_state_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("archive.bin");
    let saved = serde_json::json!({"length": 6, "tail": hex::encode(b"abcdef")});
    let mut sink = AppendFileSink::new(path.clone(), true);
    let missing = sink
        .resume(ResumeFrom::Saved(saved.clone()))
        .await
        .unwrap_err();
    assert!(missing.message.contains("is missing"), "{missing}");
    assert!(!missing.retryable);

    std::fs::write(&path, b"abc").unwrap();
    let shorter = sink
        .resume(ResumeFrom::Saved(saved.clone()))
        .await
        .unwrap_err();
    assert!(shorter.message.contains("fewer than the 6"), "{shorter}");

    std::fs::write(&path, b"abcxyz").unwrap();
    let edited = sink.resume(ResumeFrom::Saved(saved)).await.unwrap_err();
    assert!(edited.message.contains("does not end"), "{edited}");
    assert_eq!(std::fs::read(&path).unwrap(), b"abcxyz", "never touched");

    // No state although the archive holds something: it cannot be continued blindly.
    let no_state = sink.resume(ResumeFrom::Start).await.unwrap_err();
    assert!(
        no_state.message.contains("already holds 6 bytes"),
        "{no_state}"
    );
}

#[tokio::test]
async fn a_changed_stream_continues_in_the_next_file_also_after_a_restart() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("archive.mp4");
    let mut sink = AppendFileSink::new(path.clone(), true);
    sink.resume(ResumeFrom::Start).await.unwrap();
    write_fragment(&mut sink, &[b"first stream"]).await;
    sink.end_fragment().await.unwrap();
    write_fragment(&mut sink, &[]).await;
    let change = SessionReason::StreamChanged {
        change: "track 1 (avc1 640x360) → track 1 (avc1 1280x720)".into(),
    };
    sink.start_session(change.clone()).await.unwrap();
    sink.write_chunk(Bytes::from_static(b"second"))
        .await
        .unwrap();
    sink.end_fragment().await.unwrap();
    let saved = sink.checkpoint().unwrap();
    assert_eq!(saved["part"], 1);
    // A crash after the next fragment reached the file but before it was acknowledged,
    // then a restart from the saved state.
    write_fragment(&mut sink, &[b" cut"]).await;
    drop(sink);

    let mut restarted = AppendFileSink::new(path.clone(), true);
    assert!(restarted.resume(ResumeFrom::Saved(saved)).await.unwrap());
    write_fragment(&mut restarted, &[b" stream"]).await;
    restarted.end_fragment().await.unwrap();
    // And a third stream, in a file that a stopped run may have left behind.
    std::fs::write(directory.path().join("archive.2.mp4"), b"stale").unwrap();
    write_fragment(&mut restarted, &[]).await;
    restarted.start_session(change).await.unwrap();
    restarted
        .write_chunk(Bytes::from_static(b"third"))
        .await
        .unwrap();
    restarted.end_fragment().await.unwrap();
    restarted.close().await.unwrap();

    let read = |name: &str| std::fs::read(directory.path().join(name)).unwrap();
    assert_eq!(read("archive.mp4"), b"first stream");
    assert_eq!(read("archive.1.mp4"), b"second stream");
    assert_eq!(read("archive.2.mp4"), b"third");
    assert_eq!(
        part_path(Path::new("/a/archive"), 3),
        Path::new("/a/archive.3")
    );
}
