//! The `null` sink: takes every byte and keeps none. Benchmarks compare against it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::{
    async_trait, Bytes, ComponentContext, ComponentError, FragmentInfo, PluginRegistration, Sink,
    SinkConfig, SinkError,
};

inventory::submit! {
    PluginRegistration::sink::<NullSinkConfig>("null", "Consumes and counts fragments; the reference for benchmarks")
}

/// Discards fragments as fast as they come. It has no options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}

#[async_trait]
impl SinkConfig for NullSinkConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        Ok(())
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError> {
        Ok(Box::new(NullSink::default()))
    }
}

/// Counts what it is given.
#[derive(Debug, Default)]
pub struct NullSink {
    pub fragments: u64,
    pub bytes: u64,
}

#[async_trait]
impl Sink for NullSink {
    async fn begin_fragment(&mut self, _fragment: &FragmentInfo) -> Result<(), SinkError> {
        Ok(())
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        self.fragments += 1;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
