//! Applies a pipeline's stages, in order, to one call at a time.

use bytes::Bytes;

use crate::fragment::FragmentInfo;
use crate::stage::{Stage, StageError, StageItem, StageOutput};

/// What the runtime feeds into the chain.
#[derive(Debug)]
pub(crate) enum StageCall<'a> {
    Begin(&'a FragmentInfo),
    Chunk(Bytes),
    End,
    /// The sink has started a new session; stages re-emit what a session needs first.
    SessionStarted,
    /// Upstream is late: fill the stream up to this time on its timeline.
    Fill(std::time::Duration),
}

/// The stages of one pipeline.
pub(crate) struct StageChain {
    stages: Vec<Box<dyn Stage>>,
}

impl StageChain {
    pub(crate) fn new(stages: Vec<Box<dyn Stage>>) -> Self {
        Self { stages }
    }

    /// Runs `call` through every stage; what comes out of the last one lands in `output`.
    pub(crate) fn apply(
        &mut self,
        call: StageCall<'_>,
        output: &mut Vec<StageItem>,
    ) -> Result<(), StageError> {
        self.apply_from(0, call, output)
    }

    /// Tells every stage that the current fragment is abandoned or will be resent.
    pub(crate) fn abort_fragment(&mut self) {
        for stage in &mut self.stages {
            stage.abort_fragment();
        }
    }

    /// Tells every stage that the fragments from `fragment` on will be sent again.
    pub(crate) fn rewind(&mut self, fragment: &FragmentInfo) {
        for stage in &mut self.stages {
            stage.rewind(fragment);
        }
    }

    /// Tells every stage that the next fragment is sent from inside (see
    /// [`Stage::resume_fragment`]).
    pub(crate) fn resume_fragment(&mut self, offset: std::time::Duration) {
        for stage in &mut self.stages {
            stage.resume_fragment(offset);
        }
    }

    /// Tells every stage that the fragments up to `fragment` are published.
    pub(crate) fn published(&mut self, fragment: &FragmentInfo) {
        for stage in &mut self.stages {
            stage.published(fragment);
        }
    }

    /// Every stage's state for the checkpoint, in order.
    pub(crate) fn checkpoint(&self) -> Vec<Option<serde_json::Value>> {
        self.stages.iter().map(|stage| stage.checkpoint()).collect()
    }

    /// Gives every stage back the state saved in an earlier run (`None`: it saved none).
    pub(crate) fn restore(
        &mut self,
        states: Vec<Option<serde_json::Value>>,
    ) -> Result<(), StageError> {
        for (stage, state) in self.stages.iter_mut().zip(states) {
            if let Some(state) = state {
                stage.restore(state)?;
            }
        }
        Ok(())
    }

    fn apply_from(
        &mut self,
        index: usize,
        call: StageCall<'_>,
        output: &mut Vec<StageItem>,
    ) -> Result<(), StageError> {
        let Some(stage) = self.stages.get_mut(index) else {
            match call {
                StageCall::Chunk(chunk) => output.push(StageItem::Chunk(chunk)),
                StageCall::Begin(_)
                | StageCall::End
                | StageCall::SessionStarted
                | StageCall::Fill(_) => {}
            }
            return Ok(());
        };
        let mut produced = StageOutput::default();
        // Later stages see a fragment begin (or a session start) before anything this stage
        // emits for it, and see it end after.
        match call {
            StageCall::Begin(fragment) => {
                stage.begin_fragment(fragment, &mut produced)?;
                self.apply_from(index + 1, StageCall::Begin(fragment), output)?;
                self.forward(index, &mut produced, output)
            }
            StageCall::SessionStarted => {
                stage.start_session(&mut produced)?;
                self.apply_from(index + 1, StageCall::SessionStarted, output)?;
                self.forward(index, &mut produced, output)
            }
            StageCall::Fill(until) => {
                stage.fill(until, &mut produced)?;
                self.apply_from(index + 1, StageCall::Fill(until), output)?;
                self.forward(index, &mut produced, output)
            }
            // What a stage emitted before it failed still goes on: it decides what is safe to
            // emit (e.g. padding that keeps the stream parseable).
            StageCall::Chunk(chunk) => {
                let result = stage.process_chunk(chunk, &mut produced);
                self.forward(index, &mut produced, output)?;
                result
            }
            // The fragment's span goes out after what later stages still emit for it (media
            // they held back), so that the sink has seen the fragment's first media time, where
            // its output counts from, before the span.
            StageCall::End => {
                let result = stage.end_fragment(&mut produced);
                let (spans, rest): (Vec<StageItem>, Vec<StageItem>) = produced
                    .drain()
                    .partition(|item| matches!(item, StageItem::MediaSpan(_)));
                self.forward_items(index, rest, output)?;
                result?;
                self.apply_from(index + 1, StageCall::End, output)?;
                output.extend(spans);
                Ok(())
            }
        }
    }

    /// Passes what stage `index` produced on to the stages after it.
    fn forward(
        &mut self,
        index: usize,
        produced: &mut StageOutput,
        output: &mut Vec<StageItem>,
    ) -> Result<(), StageError> {
        self.forward_items(index, produced.drain(), output)
    }

    fn forward_items(
        &mut self,
        index: usize,
        items: impl IntoIterator<Item = StageItem>,
        output: &mut Vec<StageItem>,
    ) -> Result<(), StageError> {
        for item in items {
            match item {
                StageItem::Chunk(chunk) => {
                    self.apply_from(index + 1, StageCall::Chunk(chunk), output)?
                }
                StageItem::NewSession { change } => {
                    output.push(StageItem::NewSession { change });
                    self.apply_from(index + 1, StageCall::SessionStarted, output)?;
                }
                StageItem::MediaSpan(span) => output.push(StageItem::MediaSpan(span)),
                StageItem::MediaTime(time) => output.push(StageItem::MediaTime(time)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fragment::MediaSpan;

    /// Wraps every fragment in brackets and emits a header on each new session; stage "a"
    /// requests a new session when it sees the chunk "switch" and marks every fragment as
    /// spanning 1 s to 2 s.
    struct Bracket(&'static str);

    impl Stage for Bracket {
        fn begin_fragment(
            &mut self,
            _: &FragmentInfo,
            output: &mut StageOutput,
        ) -> Result<(), StageError> {
            output.push_chunk(Bytes::from(format!("{}[", self.0)));
            Ok(())
        }
        fn process_chunk(
            &mut self,
            chunk: Bytes,
            output: &mut StageOutput,
        ) -> Result<(), StageError> {
            if self.0 == "a" && chunk.as_ref() == b"switch" {
                output.request_new_session("switch");
            }
            output.push_chunk(chunk);
            Ok(())
        }
        fn end_fragment(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
            output.push_chunk(Bytes::from(format!("]{}", self.0)));
            if self.0 == "a" {
                output.mark_media_span(MediaSpan {
                    start: Duration::from_secs(1),
                    end: Duration::from_secs(2),
                });
            }
            Ok(())
        }
        fn start_session(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
            output.push_chunk(Bytes::from(format!("<{}>", self.0)));
            Ok(())
        }
    }

    fn render(items: &[StageItem]) -> String {
        items
            .iter()
            .map(|item| match item {
                StageItem::Chunk(chunk) => String::from_utf8_lossy(chunk).into_owned(),
                StageItem::NewSession { .. } => "|".to_owned(),
                StageItem::MediaTime(time) => format!("@{}", time.as_secs()),
                StageItem::MediaSpan(span) => {
                    format!("({}-{})", span.start.as_secs(), span.end.as_secs())
                }
            })
            .collect()
    }

    #[test]
    fn stages_apply_in_order_around_fragment_boundaries() {
        let mut chain = StageChain::new(vec![Box::new(Bracket("a")), Box::new(Bracket("b"))]);
        let info = FragmentInfo {
            sequence: 1,
            name: "x".into(),
            length: None,
        };
        let mut output = Vec::new();
        chain.apply(StageCall::Begin(&info), &mut output).unwrap();
        chain
            .apply(StageCall::Chunk(Bytes::from("x")), &mut output)
            .unwrap();
        chain.apply(StageCall::End, &mut output).unwrap();
        // The span stage "a" marks passes the later stage unchanged, after what that stage
        // emits at the fragment's end.
        assert_eq!(render(&output), "b[a[x]a]b(1-2)");
    }

    #[test]
    fn a_new_session_request_reaches_the_sink_before_later_stages_restart() {
        let mut chain = StageChain::new(vec![Box::new(Bracket("a")), Box::new(Bracket("b"))]);
        let mut output = Vec::new();
        chain
            .apply(StageCall::Chunk(Bytes::from("switch")), &mut output)
            .unwrap();
        assert_eq!(render(&output), "|<b>switch");

        output.clear();
        chain.apply(StageCall::SessionStarted, &mut output).unwrap();
        assert_eq!(render(&output), "<b><a>");
    }

    #[test]
    fn without_stages_chunks_pass_through() {
        let mut chain = StageChain::new(Vec::new());
        let mut output = Vec::new();
        chain
            .apply(StageCall::Chunk(Bytes::from("x")), &mut output)
            .unwrap();
        assert_eq!(output, vec![StageItem::Chunk(Bytes::from("x"))]);
    }
}
