//! The checkpoint of a source that lists a place (a directory, a bucket): loaded at the start,
//! saved after every published fragment, both on a blocking thread.

use serde::de::DeserializeOwned;
use serde::Serialize;
use streampub_core::plugin::{CheckpointFile, SourceError};
use tracing::error;

/// The state `checkpoint` holds, or the default one without a checkpoint or before the first
/// save.
pub(crate) async fn load_state<T>(checkpoint: Option<&CheckpointFile>) -> Result<T, SourceError>
where
    T: DeserializeOwned + Default + Send + 'static,
{
    let Some(checkpoint) = checkpoint.cloned() else {
        return Ok(T::default());
    };
    tokio::task::spawn_blocking(move || checkpoint.load::<T>())
        .await
        .map_err(|error| SourceError::new(error.to_string()))?
        .map_err(|error| SourceError::new(error.to_string()))
        .map(Option::unwrap_or_default)
}

/// Saves `state` into `checkpoint`, if there is one; a failure is logged (`state_save_failed`)
/// and the source goes on: what it published stays published, a restart may offer it again.
pub(crate) async fn save_state<T>(pipeline: &str, checkpoint: Option<&CheckpointFile>, state: &T)
where
    T: Serialize + Clone + Send + 'static,
{
    let Some(checkpoint) = checkpoint.cloned() else {
        return;
    };
    let snapshot = state.clone();
    let saved = tokio::task::spawn_blocking(move || checkpoint.save(&snapshot))
        .await
        .map_err(|error| format!("saving state failed: {error}"))
        .and_then(|saved| saved.map_err(|error| error.to_string()));
    if let Err(save_error) = saved {
        error!(event = "state_save_failed", pipeline = %pipeline, error = %save_error, "{save_error}");
    }
}
