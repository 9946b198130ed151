//! Fragmented MP4 as upstream batches bring it: `fmp4-timeline` joins it, `fmp4-to-flv` turns
//! it into FLV tags (enhanced RTMP on, so every codec's path is read). Whatever the bytes, no
//! panic and no runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use streampub_fuzz::{build, config, run_chain};
use streampub_stages::fmp4_timeline::Fmp4TimelineConfig;
use streampub_stages::fmp4_to_flv::Fmp4ToFlvConfig;

fuzz_target!(|data: &[u8]| {
    let timeline: Fmp4TimelineConfig = config(json!({}));
    let to_flv: Fmp4ToFlvConfig = config(json!({"filler": "none", "enhanced_rtmp": true}));
    run_chain(&mut [build(&timeline), build(&to_flv)], data);
});
