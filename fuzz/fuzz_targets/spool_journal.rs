//! The upload spool's journal as a crash, a full disk or a stray editor may leave it: any
//! bytes, beside two fragment files. Opening never panics, and a spool that opened opens again
//! from the journal it rewrote, with the same fragments queued.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streampub_sources::http::open_for_fuzzing;

fuzz_target!(|data: &[u8]| {
    let directory = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(directory.path().join("journal.jsonl"), data).unwrap();
    for sequence in [1, 2] {
        std::fs::write(directory.path().join(format!("{sequence:012}.fragment")), b"").unwrap();
    }
    if let Ok(queued) = open_for_fuzzing(directory.path()) {
        let again = open_for_fuzzing(directory.path()).expect("a rewritten journal opens");
        assert_eq!(again, queued, "the rewritten journal queues the same fragments");
    }
});
