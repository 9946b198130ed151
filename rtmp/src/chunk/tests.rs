use proptest::prelude::*;

use super::*;

fn message(type_id: u8, stream_id: u32, timestamp: u32, payload: &[u8]) -> Message {
    Message {
        type_id,
        stream_id,
        timestamp,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn encode_all(chunk_size: u32, messages: &[(u32, Message)]) -> BytesMut {
    let mut encoder = ChunkEncoder::default();
    encoder.set_chunk_size(chunk_size).unwrap();
    let mut out = BytesMut::new();
    for (chunk_stream, message) in messages {
        encoder.encode(*chunk_stream, message, &mut out).unwrap();
    }
    out
}

#[test]
fn headers_are_compressed_and_an_extended_timestamp_is_repeated_in_every_continuation() {
    let first = message(9, 1, 0x0100_0000, &[0xAA; 5]);
    let second = message(9, 1, 0x0100_0021, &[0xBB; 5]);
    let out = encode_all(4, &[(6, first), (6, second)]);
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // Type 0 on chunk stream 6: 0xFFFFFF, length 5, video, stream 1 (little-endian), then
        // the absolute timestamp in the extended field.
        0x06, 0xFF, 0xFF, 0xFF, 0, 0, 5, 9, 1, 0, 0, 0, 0x01, 0x00, 0x00, 0x00,
        0xAA, 0xAA, 0xAA, 0xAA,
        // Type 3 continuation: the extended field again.
        0xC6, 0x01, 0x00, 0x00, 0x00, 0xAA,
        // Type 2: same length and type, a delta of 0x21.
        0x86, 0, 0, 0x21, 0xBB, 0xBB, 0xBB, 0xBB,
        0xC6, 0xBB,
    ];
    assert_eq!(&out[..], expected);
}

#[test]
fn a_delta_of_0xffffff_or_more_is_extended_and_time_going_back_restarts_with_type_0() {
    let out = encode_all(
        128,
        &[
            (4, message(8, 1, 10, b"a")),
            (4, message(8, 1, 10 + 0x0100_0000, b"b")),
            (4, message(8, 1, 5, b"c")),
        ],
    );
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x04, 0, 0, 10, 0, 0, 1, 8, 1, 0, 0, 0, b'a',
        0x84, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00, b'b',
        0x04, 0, 0, 5, 0, 0, 1, 8, 1, 0, 0, 0, b'c',
    ];
    assert_eq!(&out[..], expected);
}

#[test]
fn chunk_stream_ids_take_one_two_or_three_bytes() {
    let mut out = BytesMut::new();
    write_basic_header(3, 63, &mut out);
    write_basic_header(3, 64, &mut out);
    write_basic_header(3, 319, &mut out);
    write_basic_header(3, 320, &mut out);
    write_basic_header(3, 65599, &mut out);
    assert_eq!(
        &out[..],
        &[0xFF, 0xC0, 0, 0xC0, 255, 0xC1, 0, 1, 0xC1, 0xFF, 0xFF]
    );
}

#[test]
fn a_message_longer_than_24_bits_is_refused() {
    let mut encoder = ChunkEncoder::default();
    let payload = Bytes::from(vec![0; MAX_MESSAGE_LEN + 1]);
    let error = encoder
        .encode(
            6,
            &Message {
                type_id: 9,
                stream_id: 1,
                timestamp: 0,
                payload,
            },
            &mut BytesMut::new(),
        )
        .unwrap_err();
    assert_eq!(error, ChunkError::MessageTooLong(MAX_MESSAGE_LEN + 1));
}

#[test]
fn the_server_cannot_make_the_decoder_hold_more_than_its_limit() {
    let mut decoder = ChunkDecoder::new(1024);
    // A type 0 header announcing a 16 MiB message.
    decoder.feed(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0]);
    assert!(matches!(
        decoder.next_message(),
        Err(ChunkError::IncomingTooLong {
            length: 0xFF_FFFF,
            ..
        })
    ));
    let mut decoder = ChunkDecoder::new(1024);
    decoder.feed(&[0xC5, 1, 2, 3]);
    assert_eq!(decoder.next_message(), Err(ChunkError::NoPreviousHeader(5)));
}

/// Times near the places encoders get wrong: 2^24 ms and 2^32 ms.
fn timestamps() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..100_000,
        0x00FF_FF00u32..0x0100_0100,
        0xFFFF_FF00u32..=u32::MAX,
        any::<u32>(),
    ]
}

fn messages() -> impl Strategy<Value = Vec<(u32, Message)>> {
    let one = (
        prop_oneof![Just(3u32), Just(4), Just(6), Just(63), Just(64), Just(400)],
        prop_oneof![Just(8u8), Just(9), Just(18), Just(20)],
        0u32..3,
        prop::collection::vec(any::<u8>(), 0..3000),
    );
    (
        prop::collection::vec((one, timestamps()), 1..40),
        any::<bool>(),
    )
        .prop_map(|(messages, monotonic)| {
            let mut time = 0u32;
            messages
                .into_iter()
                .map(|((chunk_stream, type_id, stream_id, payload), timestamp)| {
                    // Mostly a clock that moves forward, sometimes across the 2^24 and 2^32
                    // boundaries; sometimes any order.
                    let timestamp = if monotonic {
                        time = time.wrapping_add(timestamp % 0x0200_0000);
                        time
                    } else {
                        timestamp
                    };
                    (
                        chunk_stream,
                        message(type_id, stream_id, timestamp, &payload),
                    )
                })
                .collect()
        })
}

proptest! {
    #[test]
    fn any_messages_at_any_chunk_size_decode_as_they_were_sent(
        messages in messages(),
        chunk_size in prop_oneof![1u32..300, Just(4096), Just(65536)],
        splits in prop::collection::vec(1usize..5000, 1..20),
    ) {
        let encoded = encode_all(chunk_size, &messages);
        let mut decoder = ChunkDecoder::new(MAX_MESSAGE_LEN);
        decoder.set_chunk_size(chunk_size).unwrap();
        let mut decoded = Vec::new();
        let mut rest = &encoded[..];
        // Fed in pieces of any size, as reads return them.
        for split in splits.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*split).min(rest.len()));
            rest = tail;
            decoder.feed(piece);
            while let Some(message) = decoder.next_message().unwrap() {
                decoded.push(message);
            }
        }
        let sent: Vec<Message> = messages.into_iter().map(|(_, message)| message).collect();
        prop_assert_eq!(decoded, sent);
    }

    #[test]
    fn any_bytes_from_a_server_decode_or_fail_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        chunk_size in 1u32..512,
    ) {
        let mut decoder = ChunkDecoder::new(64 * 1024);
        decoder.set_chunk_size(chunk_size).unwrap();
        decoder.feed(&bytes);
        while let Ok(Some(_)) = decoder.next_message() {}
    }
}

#[test]
fn chunk_streams_a_basic_header_cannot_carry_are_refused() {
    let mut encoder = ChunkEncoder::default();
    let mut out = BytesMut::new();
    for chunk_stream in [0, 1, 65_600, u32::MAX] {
        assert_eq!(
            encoder.encode(chunk_stream, &message(20, 0, 0, b"x"), &mut out),
            Err(ChunkError::BadChunkStream(chunk_stream))
        );
    }
    assert!(out.is_empty());
    for chunk_stream in [2, 63, 64, 319, 320, 65_599] {
        let mut out = BytesMut::new();
        encoder
            .encode(chunk_stream, &message(20, 0, 0, b"x"), &mut out)
            .unwrap();
        let mut decoder = ChunkDecoder::new(1 << 20);
        decoder.feed(&out);
        assert!(decoder.next_message().unwrap().is_some(), "{chunk_stream}");
    }
}
