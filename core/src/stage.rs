//! Stages rewrite a fragment's chunk stream on its way to the sink.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::component::{ComponentContext, ComponentError};
use crate::fragment::{Fragment, FragmentInfo, MediaSpan};

/// A stage's parsed config.
#[async_trait]
pub trait StageConfig: Send + Sync + std::fmt::Debug {
    /// Checks the options and the environment without side effects (`streampub validate` runs
    /// only this).
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError>;
    /// Makes the stage when the pipeline starts.
    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError>;

    /// Work this stage needs done on each fragment's body before it is read (converting a
    /// file), if any.
    fn body_preparer(&self, _context: &ComponentContext) -> Option<Arc<dyn BodyPreparer>> {
        None
    }
}

/// Prepares fragment bodies for a stage, e.g. by converting a file into a form the stage reads.
/// The chunking stage runs it on each fragment, in order, before reading the body; it may run
/// for the next fragment while the current one is still being sent.
#[async_trait]
pub trait BodyPreparer: Send + Sync {
    /// Replaces `fragment.body` if needed; an error fails that fragment alone.
    async fn prepare(&self, fragment: &mut Fragment) -> Result<(), String>;
}

/// A running stage. It sees every fragment as begin, chunks, end, and pushes what it produces
/// into a [`StageOutput`]. Fragment boundaries stay visible to the stage and to what follows it.
///
/// Stages are synchronous: they transform bytes already in memory, and the runtime applies them
/// chunk by chunk, so their own buffering is all the memory they add.
pub trait Stage: Send {
    /// A fragment begins; its chunks follow.
    fn begin_fragment(
        &mut self,
        _fragment: &FragmentInfo,
        _output: &mut StageOutput,
    ) -> Result<(), StageError> {
        Ok(())
    }

    /// Takes the next chunk of the fragment and pushes what it makes of it to `output`; never
    /// blocks.
    fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError>;

    /// The fragment is whole: push what was held back for its end.
    fn end_fragment(&mut self, _output: &mut StageOutput) -> Result<(), StageError> {
        Ok(())
    }

    /// The sink starts a new session (after a reconnect): emit what a new session needs first.
    fn start_session(&mut self, _output: &mut StageOutput) -> Result<(), StageError> {
        Ok(())
    }

    /// Upstream is late and the sink is paced with filler: continue the stream up to `until`
    /// on its timeline, between fragments. A stage that keeps the timeline moves it so that
    /// the next fragment starts at `until` or later; a stage that makes the sink's media emits
    /// filler up to `until` (marking its media times), or fails if it has none. Called with
    /// `until` growing in small steps while the wait lasts.
    fn fill(
        &mut self,
        _until: std::time::Duration,
        _output: &mut StageOutput,
    ) -> Result<(), StageError> {
        Ok(())
    }

    /// The current fragment failed or will be sent again from its start: forget its partial
    /// state, keep what earlier fragments established.
    fn abort_fragment(&mut self) {}

    /// `fragment` and every one before it are published: none of them is sent again, so what
    /// was kept to rewind to them can go.
    fn published(&mut self, _fragment: &FragmentInfo) {}

    /// The fragments from `fragment` on (which this stage has seen) will be sent again after a
    /// reconnect: put the state back to what it was just before `fragment` began. Stages with
    /// state across fragments keep enough history for the fragments not yet acknowledged.
    fn rewind(&mut self, _fragment: &FragmentInfo) {}

    /// The next fragment is sent again after a failure, and its output was confirmed up to
    /// `offset` past its first media time: send it from its last keyframe at or before that
    /// point (audio and video before it dropped, whatever a session needs first, such as
    /// decoder configurations, still sent; the whole fragment if no keyframe comes before
    /// it), then the rest as usual, so that the confirmed part is not repeated and nothing
    /// after it is skipped. Called after [`Stage::rewind`], before
    /// the fragment begins; the stage that marks media times (see
    /// [`crate::plugin::StageItem::MediaTime`]) does the cut, the runtime learns where it cut from the
    /// first media time it marks. Others ignore it, and the fragment is sent whole.
    fn resume_fragment(&mut self, _offset: std::time::Duration) {}

    /// The state this stage carries from one fragment to the next, as it stands after the
    /// fragment that just ended, for the pipeline's checkpoint (see [`crate::plugin::Sink::resume`]);
    /// `None` for a stage without such state. Called only with a `state_dir`.
    fn checkpoint(&self) -> Option<serde_json::Value> {
        None
    }

    /// Puts back a state that [`Stage::checkpoint`] returned in an earlier run, before the
    /// first fragment, when the sink continues the output of that run.
    fn restore(&mut self, _state: serde_json::Value) -> Result<(), StageError> {
        Ok(())
    }
}

/// What a stage produces for the next stage or the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageItem {
    /// Bytes for the next stage or the sink.
    Chunk(Bytes),
    /// The stream cannot go on in the current session (for example the codec changed): the sink
    /// must start a new one before the chunks that follow. `change` says what changed.
    NewSession {
        /// What changed, in words.
        change: String,
    },
    /// Where the current fragment lies on the stream's timeline; emitted by the stage that
    /// makes the timeline, before the fragment ends, and passed unchanged through later stages.
    MediaSpan(MediaSpan),
    /// The bytes that follow are media of this time on the stream's timeline (a tag's decode
    /// time): a paced sink receives them no earlier than that, by the wall clock. Passed
    /// unchanged through later stages.
    MediaTime(std::time::Duration),
}

/// The collector a stage writes its items into.
#[derive(Debug, Default)]
pub struct StageOutput {
    items: Vec<StageItem>,
}

impl StageOutput {
    /// Passes `chunk` on.
    pub fn push_chunk(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.items.push(StageItem::Chunk(chunk));
        }
    }

    /// Asks for a new sink session before what follows; `change` says what changed, for the
    /// logs and for sinks that name what they start (an archive's next file).
    pub fn request_new_session(&mut self, change: impl Into<String>) {
        self.items.push(StageItem::NewSession {
            change: change.into(),
        });
    }

    /// Marks the media time of what follows, for pacing.
    pub fn mark_media_time(&mut self, time: std::time::Duration) {
        self.items.push(StageItem::MediaTime(time));
    }

    /// Tells the sink where the current fragment lies on the stream's timeline.
    pub fn mark_media_span(&mut self, span: MediaSpan) {
        self.items.push(StageItem::MediaSpan(span));
    }

    /// Takes what the stage produced so far, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, StageItem> {
        self.items.drain(..)
    }
}

/// A stage rejected the current fragment; the message names what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    /// What is wrong with the input, for the `fragment_failed` line.
    pub message: String,
}

impl StageError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
