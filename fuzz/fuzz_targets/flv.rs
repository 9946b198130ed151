//! FLV batches through `flv-timeline`: header, tags, sequence headers, timestamps. Whatever the
//! bytes, no panic and no runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use streampub_fuzz::{build, config, run_chain};
use streampub_stages::flv_timeline::FlvTimelineConfig;

fuzz_target!(|data: &[u8]| {
    let timeline: FlvTimelineConfig = config(json!({"filler": "none"}));
    run_chain(&mut [build(&timeline)], data);
});
