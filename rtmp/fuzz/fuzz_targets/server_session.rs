//! A publish session past the handshake, fed whatever a server might send, in pieces of a
//! size the input's first byte chooses: it answers or refuses, never panics or grows without
//! bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streampub_rtmp::command::ConnectRequest;
use streampub_rtmp::handshake::CLIENT_HANDSHAKE_BYTES;
use streampub_rtmp::{PublishRequest, PublishSession};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut session = PublishSession::new(
        PublishRequest {
            connect: ConnectRequest {
                app: "live".into(),
                tc_url: "rtmp://127.0.0.1/live".into(),
                fourcc_list: vec!["hvc1".into()],
            },
            stream_name: "key".into(),
            chunk_size: 4096,
            window_ack_size: 262_144,
        },
        0,
    );
    // S0 (version 3), S1 and S2: the fuzzed bytes then reach the chunk stream.
    // S0+S1+S2 are as long as C0+C1+C2.
    let mut handshake = vec![0; CLIENT_HANDSHAKE_BYTES as usize];
    handshake[0] = 3;
    if session.feed(&handshake).is_err() {
        return;
    }
    for piece in rest.chunks(usize::from(split).max(1)) {
        if session.feed(piece).is_err() {
            return;
        }
        while session.next_event().is_some() {}
        let produced = session.pending_output().len();
        session.consumed(produced);
    }
});
