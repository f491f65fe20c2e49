//! The frame splitter: `peek_frame` and `decode_frame` over arbitrary bytes agree frame by
//! frame, never read past the input and never panic; every method frame's payload goes
//! through the strict method decoder (what the connection does with it).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_amqp::constants::FRAME_METHOD;
use warren_amqp::{decode_frame, peek_frame, Method};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a frame_max, so both the limit and the unlimited path are hit.
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let frame_max = match pick % 4 {
        0 => 0,
        1 => 4096,
        2 => 131_072,
        _ => u32::from(pick) * 16,
    };
    let mut owned = BytesMut::from(input);
    let mut at = 0;
    loop {
        let peeked = peek_frame(&input[at..], frame_max);
        let decoded = decode_frame(&mut owned, frame_max);
        match (peeked, decoded) {
            (Ok(Some((frame, len))), Ok(Some(raw))) => {
                assert_eq!(frame.kind, raw.frame_type);
                assert_eq!(frame.channel, raw.channel);
                assert_eq!(frame.payload, &raw.payload[..]);
                assert!(len >= 8 && at + len <= input.len());
                at += len;
                if raw.frame_type == FRAME_METHOD {
                    if let Ok(method) = Method::decode_strict(&raw.payload) {
                        let _ = method.class_id();
                    }
                }
            }
            (Ok(None), Ok(None)) => break,
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string());
                break;
            }
            (a, b) => panic!("peek_frame {a:?} and decode_frame {b:?} disagree"),
        }
    }
});
