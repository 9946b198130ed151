//! Why read buffers are page-aligned: the same page-cached file read with `pread` in 256 KiB
//! chunks into a page-aligned buffer, and into buffers at page offsets 16 (where malloc puts a
//! large `Vec`) and 64: `cargo bench -p streampub-core --bench alignment`.
//!
//! On some CPUs (measured on AMD EPYC) the kernel's copy from the page cache is several times
//! slower into a destination 16 bytes past a page boundary; the chunking stage's buffer pool
//! therefore allocates page-aligned buffers.

use std::io::Write;
use std::os::unix::fs::FileExt;

use aligned_vec::{AVec, ConstAlign};
use divan::counter::BytesCount;
use divan::Bencher;

/// The file: 64 MiB, read whole per iteration.
const FILE_BYTES: usize = 64 << 20;
/// The chunk size of the default pipeline.
const CHUNK_BYTES: usize = 256 << 10;
const PAGE: usize = 4096;

fn main() {
    divan::main();
}

/// A page-cached temporary file of [`FILE_BYTES`].
fn cached_file() -> (tempfile::TempPath, std::fs::File) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let block = vec![7u8; 1 << 20];
    for _ in 0..FILE_BYTES / block.len() {
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    let (file, path) = file.into_parts();
    (path, file)
}

#[divan::bench(args = [0, 16, 64])]
fn pread_256k_into_buffer_at_page_offset(bencher: Bencher, offset: usize) {
    let (_path, file) = cached_file();
    let mut buffer: AVec<u8, ConstAlign<PAGE>> = AVec::with_capacity(PAGE, CHUNK_BYTES + PAGE);
    buffer.resize(CHUNK_BYTES + PAGE, 0);
    let destination = &mut buffer[offset..offset + CHUNK_BYTES];
    bencher
        .counter(BytesCount::new(FILE_BYTES))
        .bench_local(|| {
            let mut position = 0;
            while position < FILE_BYTES {
                let read = file.read_at(destination, position as u64).unwrap();
                assert!(read > 0);
                position += read;
            }
        });
}
