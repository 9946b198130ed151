//! What the fuzz targets share: building a stage from its options, and running fuzzed bytes
//! through a chain of stages as two fragments, cut into chunks, with the runtime's lifecycle.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use streampub_core::plugin::{ComponentContext, Stage, StageConfig};
use streampub_core::testing::{fragment, joined, run_stage};

/// Builds the stage `config` describes. The stages' `build` never waits, so one poll does.
pub fn build(config: &dyn StageConfig) -> Box<dyn Stage> {
    let context = ComponentContext::new("fuzz", Path::new("."));
    let mut future = pin!(config.build(&context));
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(stage)) => stage,
        Poll::Ready(Err(error)) => panic!("the stage does not build: {error}"),
        Poll::Pending => panic!("a stage's build waited"),
    }
}

/// Runs `data` through `stages` in order, each stage's output the next one's input. The first
/// byte chooses the chunk size (1 to 256 bytes), the second where the input is cut into two
/// fragments; a fragment the chain took whole is marked published, as the runtime does once a
/// sink confirms it.
pub fn run_chain(stages: &mut [Box<dyn Stage>], data: &[u8]) {
    let [chunk, cut, input @ ..] = data else {
        return;
    };
    let splits = [usize::from(*chunk) + 1];
    let cut = input.len() * usize::from(*cut) / 256;
    for (sequence, part) in [(1, &input[..cut]), (2, &input[cut..])] {
        let info = fragment(sequence, &format!("batch-{sequence}"));
        let mut bytes = part.to_vec();
        let mut whole = true;
        for stage in stages.iter_mut() {
            let (items, result) = run_stage(stage.as_mut(), &info, &bytes, &splits);
            bytes = joined(&items);
            if result.is_err() {
                whole = false;
                break;
            }
        }
        // As the runtime does: a fragment that failed anywhere is aborted everywhere.
        if !whole {
            for stage in stages.iter_mut() {
                stage.abort_fragment();
            }
        }
        if whole {
            for stage in stages.iter_mut() {
                stage.published(&info);
            }
        }
    }
}

/// A stage config of type `C` from JSON options.
pub fn config<C: serde::de::DeserializeOwned>(options: serde_json::Value) -> C {
    serde_json::from_value(options).expect("the fuzz targets' options are valid")
}
