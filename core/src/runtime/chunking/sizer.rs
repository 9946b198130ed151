//! How big each chunk is: fixed, or adapting to how fast the sink drains (`chunk_size: auto`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::chunk::{ChunkSize, AUTO_CHUNK_MAX, AUTO_CHUNK_MIN};

/// Where `chunk_size: auto` starts.
const AUTO_CHUNK_START: usize = 256 * 1024;
/// Chunks in a row that found the budget free before `auto` doubles the size.
pub(super) const AUTO_GROW_AFTER: u32 = 4;

/// Picks each chunk's size. Fixed sizes stay; `auto` doubles (up to [`AUTO_CHUNK_MAX`] and half
/// of `max_in_flight`) after [`AUTO_GROW_AFTER`] chunks in a row found the budget free, that is
/// while the sink keeps up, and halves (down to [`AUTO_CHUNK_MIN`]) each time the reader had
/// to wait for the sink to drain. Big chunks cost fewer hand-overs when the sink is fast;
/// small ones keep less in flight per step when it is slow.
#[derive(Debug, Clone)]
pub struct ChunkSizer {
    current: usize,
    range: Option<(usize, usize)>,
    kept_up: u32,
}

impl ChunkSizer {
    pub fn new(chunk_size: ChunkSize, max_in_flight: usize) -> Self {
        match chunk_size {
            ChunkSize::Fixed(size) => Self {
                current: usize::try_from(size.bytes())
                    .unwrap_or(usize::MAX)
                    .min(max_in_flight)
                    .max(1),
                range: None,
                kept_up: 0,
            },
            ChunkSize::Auto => {
                let max = AUTO_CHUNK_MAX
                    .min(max_in_flight / 2)
                    .max(AUTO_CHUNK_MIN.min(max_in_flight));
                let min = AUTO_CHUNK_MIN.min(max);
                Self {
                    current: AUTO_CHUNK_START.clamp(min, max),
                    range: Some((min, max)),
                    kept_up: 0,
                }
            }
        }
    }

    /// The size of the next chunk.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The largest size this sizer may pick.
    pub fn largest(&self) -> usize {
        self.range.map_or(self.current, |(_, max)| max)
    }

    /// The budget had room for the chunk at once.
    pub fn kept_up(&mut self) {
        let Some((_, max)) = self.range else { return };
        self.kept_up += 1;
        if self.kept_up >= AUTO_GROW_AFTER {
            self.current = (self.current * 2).min(max);
            self.kept_up = 0;
        }
    }

    /// The reader had to wait for the sink to drain before this chunk.
    pub fn waited(&mut self) {
        let Some((min, _)) = self.range else { return };
        self.current = (self.current / 2).max(min);
        self.kept_up = 0;
    }
}

/// Budget for a chunk of the sizer's current size if it is free right now (which the sizer
/// counts as the sink keeping up).
pub(super) fn try_budget(
    budget: &Arc<Semaphore>,
    sizer: &mut ChunkSizer,
) -> Option<OwnedSemaphorePermit> {
    let permit = Arc::clone(budget)
        .try_acquire_many_owned(sizer.current() as u32)
        .ok()?;
    sizer.kept_up();
    Some(permit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::ByteSize;

    #[test]
    fn auto_chunk_size_grows_while_the_sink_keeps_up_and_shrinks_when_it_waits() {
        let mut sizer = ChunkSizer::new(ChunkSize::Auto, 4 << 20);
        assert_eq!(sizer.current(), 256 << 10);
        for _ in 0..AUTO_GROW_AFTER * 4 {
            sizer.kept_up();
        }
        assert_eq!(sizer.current(), AUTO_CHUNK_MAX);
        for _ in 0..10 {
            sizer.waited();
        }
        assert_eq!(sizer.current(), AUTO_CHUNK_MIN);
        // One wait resets the streak.
        for _ in 0..AUTO_GROW_AFTER - 1 {
            sizer.kept_up();
        }
        sizer.waited();
        sizer.kept_up();
        assert_eq!(sizer.current(), AUTO_CHUNK_MIN);
        // Never more than half the budget, so two chunks can be in flight.
        let mut small = ChunkSizer::new(ChunkSize::Auto, 1 << 20);
        for _ in 0..AUTO_GROW_AFTER * 4 {
            small.kept_up();
        }
        assert_eq!(small.current(), 512 << 10);
        // A fixed size stays.
        let mut fixed = ChunkSizer::new(ChunkSize::Fixed(ByteSize(1000)), 1 << 20);
        fixed.waited();
        fixed.kept_up();
        assert_eq!(fixed.current(), 1000);
    }
}
