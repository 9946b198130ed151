use std::sync::Arc;

use super::spool::{Admission, FragmentState, Spool, SpoolError};

/// Receives `body` the way an upload does and commits it.
fn upload(spool: &Arc<Spool>, name: &str, body: &[u8]) -> super::spool::Record {
    let Admission::Admitted(slot) = spool.admit(name) else {
        panic!("{name} not admitted");
    };
    let path = tempfile::Builder::new()
        .prefix(super::spool::UPLOAD_PREFIX)
        .tempfile_in(spool.directory())
        .unwrap()
        .into_temp_path();
    std::fs::write(&path, body).unwrap();
    spool
        .commit(slot, path, body.len() as u64, format!("{:?}", body))
        .unwrap()
}

#[test]
fn spool_survives_a_restart_and_keeps_order_and_names() {
    let directory = tempfile::tempdir().unwrap();
    {
        let (spool, mut queue) = Spool::open(directory.path(), 10).unwrap();
        let first = upload(&spool, "a.mp4", b"aaa");
        let second = upload(&spool, "b.mp4", b"bb");
        assert_eq!((first.sequence, second.sequence), (1, 2));
        assert_eq!(queue.try_recv().unwrap().name, "a.mp4");
        spool.published(&first).unwrap();
        assert!(!spool.fragment_path(1).exists());
        assert!(matches!(spool.admit("a.mp4"), Admission::Existing(_)));
        // Leftovers of a crash: a partial upload and a file no journal line accepted.
        std::fs::write(directory.path().join(".upload-x"), b"partial").unwrap();
        std::fs::write(spool.fragment_path(9), b"orphan").unwrap();
    }
    let (spool, mut queue) = Spool::open(directory.path(), 10).unwrap();
    let pending = queue.try_recv().unwrap();
    assert_eq!((pending.sequence, pending.name.as_str()), (2, "b.mp4"));
    assert!(queue.try_recv().is_err());
    assert_eq!(spool.get("a.mp4").unwrap().state, FragmentState::Published);
    assert!(!directory.path().join(".upload-x").exists());
    assert!(!spool.fragment_path(9).exists());
    assert_eq!(upload(&spool, "c.mp4", b"c").sequence, 3);
}

#[test]
fn backlog_is_bounded_and_released_by_abandoned_uploads() {
    let directory = tempfile::tempdir().unwrap();
    let (spool, _queue) = Spool::open(directory.path(), 2).unwrap();
    let first = upload(&spool, "a", b"a");
    let Admission::Admitted(slot) = spool.admit("b") else {
        panic!("b not admitted")
    };
    assert!(matches!(spool.admit("b"), Admission::InProgress));
    assert!(matches!(spool.admit("c"), Admission::BacklogFull));
    drop(slot);
    assert!(matches!(spool.admit("c"), Admission::Admitted(_)));
    spool.published(&first).unwrap();
    upload(&spool, "d", b"d");
}

#[test]
fn a_spool_is_used_by_one_pipeline_at_a_time() {
    let directory = tempfile::tempdir().unwrap();
    let _open = Spool::open(directory.path(), 2).unwrap();
    let error = Spool::open(directory.path(), 2).unwrap_err();
    assert!(matches!(error, SpoolError::Locked { .. }), "{error}");
}

#[test]
fn failed_fragments_are_tried_again_on_the_next_start() {
    let directory = tempfile::tempdir().unwrap();
    {
        let (spool, _queue) = Spool::open(directory.path(), 4).unwrap();
        let record = upload(&spool, "a", b"a");
        spool.failed(&record, "sink gave up").unwrap();
        assert_eq!(spool.get("a").unwrap().state, FragmentState::Failed);
    }
    let (_spool, mut queue) = Spool::open(directory.path(), 4).unwrap();
    assert_eq!(queue.try_recv().unwrap().name, "a");
}
