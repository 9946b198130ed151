//! Reading a file's bytes as they arrive, chunk by chunk: a format's parser collects a header
//! that two chunks split, takes a payload as slices of the chunks (no copy), or skips one, and
//! always knows where in the file it is.

use bytes::Bytes;

/// The unread rest of one chunk of a file.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    chunk: Bytes,
    at: usize,
    /// The file offset of the chunk's first byte.
    chunk_start: u64,
}

impl ChunkReader {
    /// `chunk`, whose first byte is at `chunk_start` in its file.
    pub(crate) fn new(chunk: Bytes, chunk_start: u64) -> Self {
        Self {
            chunk,
            at: 0,
            chunk_start,
        }
    }

    /// Whether the chunk is all read.
    pub(crate) fn is_empty(&self) -> bool {
        self.at == self.chunk.len()
    }

    /// The file offset of the next byte.
    pub(crate) fn position(&self) -> u64 {
        self.chunk_start + self.at as u64
    }

    /// The unread bytes.
    pub(crate) fn rest(&self) -> &[u8] {
        &self.chunk[self.at..]
    }

    /// Appends to `bytes` until it holds `wanted` bytes (or the chunk ends): whether it does.
    pub(crate) fn fill(&mut self, bytes: &mut Vec<u8>, wanted: usize) -> bool {
        let used = wanted.saturating_sub(bytes.len()).min(self.rest().len());
        bytes.extend_from_slice(&self.rest()[..used]);
        self.at += used;
        bytes.len() >= wanted
    }

    /// Up to `left` bytes (all of the rest: `None`) as a slice of the chunk, counted off `left`.
    pub(crate) fn take(&mut self, left: Option<&mut u64>) -> Bytes {
        let used = self.count_off(left);
        self.chunk.slice(self.at - used..self.at)
    }

    /// Passes over up to `left` bytes (all of the rest: `None`), counted off `left`.
    pub(crate) fn skip(&mut self, left: Option<&mut u64>) {
        self.count_off(left);
    }

    fn count_off(&mut self, left: Option<&mut u64>) -> usize {
        let available = self.rest().len();
        let used = match left {
            Some(left) => {
                let used = (*left).min(available as u64) as usize;
                *left -= used as u64;
                used
            }
            None => available,
        };
        self.at += used;
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_split_across_chunks_is_collected_and_payloads_are_counted_off() {
        let mut header = Vec::new();
        let mut first = ChunkReader::new(Bytes::from_static(b"abc"), 100);
        assert!(!first.fill(&mut header, 5));
        assert!(first.is_empty());
        let mut second = ChunkReader::new(Bytes::from_static(b"defghij"), 103);
        assert!(second.fill(&mut header, 5));
        assert_eq!(header, b"abcde");
        assert_eq!(second.position(), 105);
        let mut left = 3;
        assert_eq!(second.take(Some(&mut left)), Bytes::from_static(b"fgh"));
        assert_eq!(left, 0);
        let mut left = 10;
        second.skip(Some(&mut left));
        assert_eq!((left, second.position()), (8, 110));
        assert!(second.is_empty());
        let mut third = ChunkReader::new(Bytes::from_static(b"xyz"), 110);
        assert_eq!(third.take(None), Bytes::from_static(b"xyz"));
    }
}
