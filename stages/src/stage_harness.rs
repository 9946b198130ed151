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
