//! Zeros that complete a structure cut short (a box or tag whose header promised more bytes
//! than its file had), so that what follows is still read in step downstream.

use bytes::Bytes;
use streampub_core::plugin::StageOutput;

/// Writes `length` zero bytes, from one static buffer rather than an allocation of that size.
pub(crate) fn push_zeros(mut length: u64, output: &mut StageOutput) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while length > 0 {
        let piece = length.min(ZEROS.len() as u64) as usize;
        output.push_chunk(Bytes::from_static(&ZEROS[..piece]));
        length -= piece as u64;
    }
}
