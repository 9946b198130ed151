//! MPEG-TS batches: `mpegts-timeline` joins them (PAT, PMT, PCR, PES timestamps), and
//! `mpegts-to-flv` turns them into FLV tags (PES reassembly, H.264 access units, ADTS).
//! Whatever the bytes, no panic and no runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use streampub_fuzz::{build, config, run_chain};
use streampub_stages::mpegts_timeline::MpegtsTimelineConfig;
use streampub_stages::mpegts_to_flv::MpegtsToFlvConfig;

fuzz_target!(|data: &[u8]| {
    let timeline: MpegtsTimelineConfig = config(json!({"filler": "none"}));
    let to_flv: MpegtsToFlvConfig = config(json!({}));
    run_chain(&mut [build(&timeline), build(&to_flv)], data);
});
