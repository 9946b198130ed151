//! Pooled, page-aligned read buffers.
//!
//! Alignment matters for speed: copying from the page cache into a destination at page offset
//! 16 (where malloc puts large `Vec`s) took 4 times as long per GiB as into a page-aligned one
//! on an AMD EPYC host (see `benches/alignment.rs` and BENCHMARKS.md). So buffers are
//! allocated page-aligned rather than left to malloc.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use aligned_vec::{AVec, ConstAlign};
use bytes::Bytes;

/// The alignment of read buffers: a page.
pub const BUFFER_ALIGNMENT: usize = 4096;

/// A page-aligned byte buffer.
pub type AlignedBuffer = AVec<u8, ConstAlign<BUFFER_ALIGNMENT>>;

/// A zeroed page-aligned buffer of `size` bytes.
pub fn aligned_buffer(size: usize) -> AlignedBuffer {
    let mut buffer = AlignedBuffer::with_capacity(BUFFER_ALIGNMENT, size);
    buffer.resize(size, 0);
    buffer
}

/// Most read buffers a [`BufferPool`] keeps for reuse.
const MAX_POOLED_BUFFERS: usize = 16;

/// Read buffers that return to the pool when the last chunk made from them is dropped, so a
/// steady stream reads into the same few buffers: no allocation, zeroing or page faults per
/// chunk. An idle pipeline keeps none ([`BufferPool::release`]).
#[derive(Debug, Clone, Default)]
pub struct BufferPool(Arc<Mutex<PooledBuffers>>);

#[derive(Debug, Default)]
struct PooledBuffers {
    free: Vec<AlignedBuffer>,
    /// Nothing to read for now: buffers coming back are freed instead of kept.
    idle: bool,
}

impl BufferPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PooledBuffers> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// A buffer of at least `size` bytes.
    fn take(&self, size: usize) -> AlignedBuffer {
        let mut pool = self.lock();
        pool.idle = false;
        while let Some(buffer) = pool.free.pop() {
            if buffer.len() >= size {
                return buffer;
            }
        }
        aligned_buffer(size)
    }

    /// Frees the pooled buffers, and those still in flight as they come back, until the next
    /// [`BufferPool::take`]: a pipeline waiting for its next fragment holds no read buffers.
    pub fn release(&self) {
        let mut pool = self.lock();
        pool.idle = true;
        pool.free = Vec::new();
    }

    /// Reads up to `size` bytes of `file` from `offset` into a pooled buffer (blocking; one
    /// positioned read, no shared cursor); `None` at the end of the file. The buffer comes
    /// back to the pool when the chunk is dropped.
    pub(super) fn read_at(
        &self,
        file: &std::fs::File,
        offset: u64,
        size: usize,
    ) -> io::Result<Option<Bytes>> {
        let mut buffer = self.take(size);
        let read = file.read_at(&mut buffer[..size], offset)?;
        Ok(self.lend(buffer, read))
    }

    /// Like [`BufferPool::read_at`], but only what the page cache holds, without waiting for
    /// the disk (`preadv2` with `RWF_NOWAIT`): it does not block, so it may run on an async
    /// worker. May return fewer bytes than asked (the part that is cached).
    pub(super) fn read_cached(&self, file: &std::fs::File, offset: u64, size: usize) -> CachedRead {
        let mut buffer = self.take(size);
        let read = rustix::io::preadv2(
            file,
            &mut [io::IoSliceMut::new(&mut buffer[..size])],
            offset,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(read) => match self.lend(buffer, read) {
                Some(bytes) => CachedRead::Data(bytes),
                None => CachedRead::End,
            },
            // Not cached, or a file system or kernel that cannot tell (NFS, FUSE, a seccomp
            // filter, Linux before 4.14): the blocking read does it, and reports a real error.
            Err(_) => {
                self.give_back(buffer);
                CachedRead::NotCached
            }
        }
    }

    /// The first `read` bytes of `buffer` as a chunk that gives the buffer back when dropped;
    /// `None` (and the buffer back at once) when nothing was read: the end of the file.
    fn lend(&self, buffer: AlignedBuffer, read: usize) -> Option<Bytes> {
        if read == 0 {
            self.give_back(buffer);
            return None;
        }
        let chunk = Bytes::from_owner(PooledBuffer {
            buffer: Some(buffer),
            pool: self.clone(),
        });
        Some(chunk.slice(..read))
    }

    fn give_back(&self, buffer: AlignedBuffer) {
        let mut pool = self.lock();
        if !pool.idle && pool.free.len() < MAX_POOLED_BUFFERS {
            pool.free.push(buffer);
        }
    }
}

/// What [`BufferPool::read_cached`] got.
pub(super) enum CachedRead {
    Data(Bytes),
    End,
    /// Not in the page cache: reading it would wait for the disk.
    NotCached,
}

/// A buffer lent to a chunk; `None` only while it is handed back.
struct PooledBuffer {
    buffer: Option<AlignedBuffer>,
    pool: BufferPool,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_deref().unwrap_or_default()
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_buffers_are_page_aligned_and_reused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file.bin");
        std::fs::write(&path, vec![5u8; 10_000]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let pool = BufferPool::default();
        let first = pool.read_at(&file, 0, 8192).unwrap().unwrap();
        assert_eq!(first.as_ptr() as usize % BUFFER_ALIGNMENT, 0);
        assert_eq!(first.len(), 8192);
        let address = first.as_ptr();
        drop(first);
        let second = pool.read_at(&file, 8192, 8192).unwrap().unwrap();
        assert_eq!(second.as_ptr(), address, "the returned buffer is reused");
        assert_eq!(&second[..], &[5u8; 10_000 - 8192][..]);
    }

    #[test]
    fn a_cached_read_gets_what_the_page_cache_holds() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file.bin");
        // Just written: in the page cache.
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let pool = BufferPool::default();
        match pool.read_cached(&file, 0, 8192) {
            CachedRead::Data(bytes) => assert_eq!(&bytes[..], &[7u8; 8192][..]),
            // A file system without RWF_NOWAIT: the caller reads it blocking instead.
            CachedRead::NotCached => {}
            CachedRead::End => panic!("not at the end"),
        }
        assert!(matches!(
            pool.read_cached(&file, 10_000, 8192),
            CachedRead::End | CachedRead::NotCached
        ));
    }
}
