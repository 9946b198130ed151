//! The `null` sink: takes every byte and keeps none. Benchmarks compare against it.

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    async_trait, ByteSize, Bytes, ComponentContext, ComponentError, FragmentInfo, Sink, SinkConfig,
    SinkError,
};
use streampub_core::register_sink;

register_sink!(
    NullSinkConfig,
    "null",
    "Consumes and counts fragments; the reference for benchmarks",
);

/// Discards fragments as fast as they come, or at a set pace.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {
    /// Takes at most this many bytes per second, to stand in for a slow consumer (a congested
    /// uplink) when testing backpressure. Unlimited when unset.
    #[serde(default)]
    pub bytes_per_second: Option<ByteSize>,
}

#[async_trait]
impl SinkConfig for NullSinkConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        if self.bytes_per_second == Some(ByteSize(0)) {
            return Err(ComponentError::field(
                "bytes_per_second",
                "must be more than 0",
            ));
        }
        Ok(())
    }

    fn discards_output(&self) -> bool {
        true
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError> {
        Ok(Box::new(NullSink {
            bytes_per_second: self.bytes_per_second.map(ByteSize::bytes),
            started: None,
            bytes: 0,
        }))
    }
}

/// Counts what it is given; the pipeline's stats report the totals.
#[derive(Debug)]
struct NullSink {
    bytes_per_second: Option<u64>,
    /// When the first byte came, for the pace.
    started: Option<Instant>,
    bytes: u64,
}

#[async_trait]
impl Sink for NullSink {
    async fn begin_fragment(&mut self, _fragment: &FragmentInfo) -> Result<(), SinkError> {
        Ok(())
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.bytes += chunk.len() as u64;
        if let Some(rate) = self.bytes_per_second {
            // Sleep until the bytes taken so far fit the pace since the first one.
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = started + Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        Ok(())
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
