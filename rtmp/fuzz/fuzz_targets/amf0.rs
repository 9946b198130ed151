//! AMF0 values as a server's commands carry them; what reads is written back and reads the
//! same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streampub_rtmp::amf0::{encode, Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = Value::read_all(data) {
        let written = encode(&values);
        let again = Value::read_all(&written).expect("what was written reads");
        // NaN is not equal to itself: compare the bytes written again instead.
        assert_eq!(encode(&again), written);
    }
});
