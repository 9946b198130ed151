//! What a pipeline remembers across runs besides its source's own state: the sink's and the
//! stages' state after the last acknowledged fragment, and the fragments acknowledged most
//! recently. Kept in `<state_dir>/<pipeline>/pipeline.json`.
//!
//! The order that makes a crash at any moment safe, for every fragment the sink confirms:
//! 1. the sink's data is durable (its `end_fragment` returned: written, and synced where the
//!    sink syncs);
//! 2. this file is replaced atomically with the sink's and the stages' state after the fragment,
//!    and the fragment's name and length join the recent list;
//! 3. the fragment is acknowledged to its source, which then saves its own state and moves,
//!    deletes or answers.
//!
//! A crash before 2 leaves the sink's output longer than recorded: on the next start the sink
//! cuts it back to the recorded state and the source offers the fragment again. A crash between
//! 2 and 3 leaves the source unaware of the acknowledgement: it offers the fragment again, the
//! runtime finds it among the recent ones and acknowledges it without sending it twice. So the
//! source's state and this file together are as good as one atomic write.
//!
//! For a sink that confirms media inside a fragment (see [`crate::plugin::Sink::confirmed_output_time`]),
//! the file also says how far into the oldest unconfirmed fragment the output was confirmed,
//! rewritten every [`PARTIAL_SAVE_STEP`] of media: after a crash that fragment is sent from its
//! last keyframe before that point, so a crash repeats at most a GOP, `confirm_margin`, one step
//! and one chunk of media (the driver looks after each chunk it writes).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{CheckpointError, CheckpointFile};
use crate::fragment::FragmentInfo;
use crate::sink::ResumeFrom;

/// How many acknowledged fragments are remembered for recognising ones offered again.
const RECENT_FRAGMENTS: usize = 256;

/// How much more media must be confirmed inside a fragment before that is saved again.
pub(crate) const PARTIAL_SAVE_STEP: Duration = Duration::from_secs(1);

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SavedState {
    /// The sink's state after the last acknowledged fragment.
    sink: Option<Value>,
    /// The stages' types, in pipeline order, when the state was saved.
    stage_types: Vec<String>,
    /// Each stage's state after the last acknowledged fragment, in pipeline order.
    stages: Vec<Option<Value>>,
    /// The fragments acknowledged most recently, oldest first.
    recent: VecDeque<FragmentIdentity>,
    /// How far into the fragment after them the output was confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partial: Option<PartialFragment>,
}

/// A fragment whose output was confirmed part of the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PartialFragment {
    fragment: FragmentIdentity,
    /// Past its first media time, in milliseconds.
    confirmed_ms: u64,
}

/// What recognises a fragment offered again after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FragmentIdentity {
    name: String,
    length: Option<u64>,
}

impl From<&FragmentInfo> for FragmentIdentity {
    fn from(info: &FragmentInfo) -> Self {
        Self {
            name: info.name.clone(),
            length: info.length,
        }
    }
}

/// The sink's and the stages' state right after a fragment ended, kept with the fragment until
/// the sink confirms it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) sink: Option<Value>,
    pub(crate) stages: Vec<Option<Value>>,
}

/// The pipeline's state file, loaded at start and rewritten as fragments are confirmed.
#[derive(Debug)]
pub(crate) struct PipelineCheckpoint {
    file: CheckpointFile,
    stage_types: Vec<String>,
    /// What the file holds; `None` before the first fragment was recorded.
    saved: Option<SavedState>,
    /// Still at the start of the run, where the source may offer fragments it was not told
    /// about: ends with the first fragment that is not a recent one.
    catching_up: bool,
    /// The fragment an earlier run was cut short in, until the run's first new fragment.
    cut_short: Option<PartialFragment>,
}

impl PipelineCheckpoint {
    /// Loads the state of the pipeline whose stages have the types `stage_types` (blocking).
    pub(crate) fn load(path: PathBuf, stage_types: Vec<String>) -> Result<Self, CheckpointError> {
        let file = CheckpointFile::new(path);
        let saved: Option<SavedState> = file.load()?;
        Ok(Self {
            file,
            stage_types,
            catching_up: saved.as_ref().is_some_and(|saved| !saved.recent.is_empty()),
            cut_short: saved.as_ref().and_then(|saved| saved.partial.clone()),
            saved,
        })
    }

    /// What the sink resumes from.
    pub(crate) fn resume_from(&self) -> ResumeFrom {
        match self.saved.as_ref().and_then(|saved| saved.sink.clone()) {
            Some(state) => ResumeFrom::Saved(state),
            None => ResumeFrom::Start,
        }
    }

    /// The stages' saved states, for a sink that continues its output; an error if the
    /// pipeline's stages are not the ones the states were saved with.
    pub(crate) fn stage_states(&self) -> Result<Vec<Option<Value>>, String> {
        let Some(saved) = &self.saved else {
            return Ok(Vec::new());
        };
        if saved.stage_types != self.stage_types {
            return Err(format!(
                "the pipeline's stages changed since its output was written (then: [{}], now: \
                 [{}]), so the saved state no longer describes it; move the output and {} away \
                 to start anew, or restore the stages",
                saved.stage_types.join(", "),
                self.stage_types.join(", "),
                self.file.path().display()
            ));
        }
        Ok(saved.stages.clone())
    }

    /// Whether `fragment` was acknowledged in an earlier run although its source offers it
    /// again (the run stopped between this file's update and the source's own).
    pub(crate) fn already_published(&mut self, fragment: &FragmentInfo) -> bool {
        if !self.catching_up {
            return false;
        }
        let identity = FragmentIdentity::from(fragment);
        let known = self
            .saved
            .as_ref()
            .is_some_and(|saved| saved.recent.contains(&identity));
        self.catching_up = known;
        known
    }

    /// Runs `write` on the state off the async threads (it syncs a file), and gives the state
    /// back with what `write` returned.
    pub(crate) async fn write_in_background(
        mut self,
        write: impl FnOnce(&mut Self) -> Result<(), CheckpointError> + Send + 'static,
    ) -> Result<(Self, Result<(), CheckpointError>), tokio::task::JoinError> {
        tokio::task::spawn_blocking(move || {
            let result = write(&mut self);
            (self, result)
        })
        .await
    }

    /// Records `fragments` as confirmed, with the state after the last of them (blocking:
    /// an atomic, synced replacement of the file).
    pub(crate) fn record<'a>(
        &mut self,
        fragments: impl IntoIterator<Item = &'a FragmentInfo>,
        after: Snapshot,
    ) -> Result<(), CheckpointError> {
        let saved = self.saved.get_or_insert_with(SavedState::default);
        for fragment in fragments {
            if saved.recent.len() == RECENT_FRAGMENTS {
                saved.recent.pop_front();
            }
            saved.recent.push_back(FragmentIdentity::from(fragment));
        }
        saved.sink = after.sink;
        saved.stage_types.clone_from(&self.stage_types);
        saved.stages = after.stages;
        saved.partial = None;
        self.file.save(saved)
    }

    /// Records that the output of `fragment`, the oldest not confirmed whole, was confirmed up
    /// to `confirmed` past its first media time (blocking, like [`Self::record`]).
    pub(crate) fn record_partial(
        &mut self,
        fragment: &FragmentInfo,
        confirmed: Duration,
    ) -> Result<(), CheckpointError> {
        let saved = self.saved.get_or_insert_with(|| SavedState {
            stage_types: self.stage_types.clone(),
            ..SavedState::default()
        });
        saved.partial = Some(PartialFragment {
            fragment: FragmentIdentity::from(fragment),
            confirmed_ms: confirmed.as_millis() as u64,
        });
        self.file.save(saved)
    }

    /// How far into `fragment`, the run's first new fragment, the earlier run's output was
    /// confirmed, if that run was cut short in it; `None` for every later fragment.
    pub(crate) fn take_partial(&mut self, fragment: &FragmentInfo) -> Option<Duration> {
        let partial = self.cut_short.take()?;
        (partial.fragment == FragmentIdentity::from(fragment))
            .then(|| Duration::from_millis(partial.confirmed_ms))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn info(name: &str) -> FragmentInfo {
        FragmentInfo {
            sequence: 1,
            name: name.into(),
            length: Some(10),
        }
    }

    #[test]
    fn state_survives_a_restart_and_recognises_fragments_offered_again() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("pipeline.json");
        let types = vec!["fmp4-timeline".to_owned()];
        let mut state = PipelineCheckpoint::load(path.clone(), types.clone()).unwrap();
        assert_eq!(state.resume_from(), ResumeFrom::Start);
        let snapshot = Snapshot {
            sink: Some(json!({"length": 20})),
            stages: vec![Some(json!({"offset": 2}))],
        };
        state.record([&info("a"), &info("b")], snapshot).unwrap();

        let mut again = PipelineCheckpoint::load(path.clone(), types).unwrap();
        assert_eq!(
            again.resume_from(),
            ResumeFrom::Saved(json!({"length": 20}))
        );
        assert_eq!(again.stage_states().unwrap(), [Some(json!({"offset": 2}))]);
        assert!(again.already_published(&info("a")));
        assert!(again.already_published(&info("b")));
        assert!(!again.already_published(&info("c")));
        // Past the first new fragment, a recent name is a new fragment of that name.
        assert!(!again.already_published(&info("a")));

        // Part of the next one confirmed, then a restart: it is known, until recorded whole.
        again
            .record_partial(&info("c"), Duration::from_millis(12_500))
            .unwrap();
        let mut again =
            PipelineCheckpoint::load(path.clone(), vec!["fmp4-timeline".into()]).unwrap();
        assert_eq!(
            again.take_partial(&info("c")),
            Some(Duration::from_millis(12_500))
        );
        assert_eq!(
            again.take_partial(&info("c")),
            None,
            "only the first new one"
        );
        let reload = || PipelineCheckpoint::load(path.clone(), vec!["fmp4-timeline".into()]);
        let mut again = reload().unwrap();
        assert_eq!(again.take_partial(&info("d")), None);
        again.record([&info("c")], Snapshot::default()).unwrap();
        let mut again = reload().unwrap();
        assert_eq!(again.take_partial(&info("c")), None, "recorded whole");

        let changed = PipelineCheckpoint::load(path, Vec::new()).unwrap();
        let error = changed.stage_states().unwrap_err();
        assert!(error.contains("stages changed"), "{error}");
    }
}
