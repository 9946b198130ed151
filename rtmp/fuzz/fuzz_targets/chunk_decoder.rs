//! The chunk decoder alone, at a chunk size the input's first two bytes choose.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streampub_rtmp::chunk::ChunkDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((size, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mut decoder = ChunkDecoder::new(1 << 20);
    let _ = decoder.set_chunk_size(u32::from(u16::from_be_bytes(*size)));
    decoder.feed(rest);
    while let Ok(Some(_)) = decoder.next_message() {}
});
