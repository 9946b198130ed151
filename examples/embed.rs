//! Embedding streampub: a program pushes fragments into a running pipeline through a `channel`
//! source and learns when each one has been fully taken by the sink.
//!
//!     cargo run -p streampub --example embed -- OUTPUT_DIR
//!
//! It publishes three fragments (from memory, from a reader, from a file) into OUTPUT_DIR, one
//! file per fragment, and exits 0 once all three are delivered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use streampub_core::plugin::FragmentOutcome;
use streampub_core::{LoadedConfig, Registry, Runtime};
use streampub_sources::channel::ChannelHub;

const PIPELINE: &str = r#"
pipelines:
  - name: embedded
    source:
      type: channel
      name: ingest
    sink:
      type: file
      mode: per_fragment
      path: ${OUTPUT_DIR}
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Link the built-in plugins so `inventory` sees them.
    streampub_stages::link();
    streampub_sources::link();
    streampub_sinks::link();

    let output_dir: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: embed OUTPUT_DIR")?
        .into();
    let variables = HashMap::from([("OUTPUT_DIR".to_owned(), output_dir.display().to_string())]);
    let registry = Registry::from_inventory()?;
    let config = LoadedConfig::from_yaml(
        PIPELINE,
        Path::new("<embedded>"),
        Path::new("."),
        &variables,
        &registry,
    )?;
    let runtime = Runtime::start(&config).await?;

    let channels = ChannelHub::shared(runtime.services());
    let ingest = channels.sender("ingest").ok_or("no channel named ingest")?;
    let from_memory = ingest
        .send_bytes("from-memory.bin", b"fragment held in memory".to_vec())
        .await?;
    let from_reader = ingest
        .send_reader(
            "from-reader.bin",
            &b"fragment streamed from a reader"[..],
            None,
        )
        .await?;
    let source_file =
        std::env::temp_dir().join(format!("streampub-embed-{}.bin", std::process::id()));
    std::fs::write(&source_file, b"fragment stored in a file")?;
    let from_file = ingest.send_file("from-file.bin", &source_file).await?;

    for (name, delivery) in [
        ("from-memory", from_memory),
        ("from-reader", from_reader),
        ("from-file", from_file),
    ] {
        let outcome = delivery.await;
        println!("{name}: {outcome:?}");
        if outcome != FragmentOutcome::Delivered {
            return Err(format!("{name} was not delivered: {outcome:?}").into());
        }
    }
    std::fs::remove_file(&source_file)?;

    // No more fragments: close the channel, drop our sender, and let the pipeline finish.
    channels.close("ingest");
    drop(ingest);
    let report = runtime.wait().await;
    if !report.succeeded() {
        return Err(format!("pipeline failed: {:?}", report.pipelines).into());
    }
    Ok(())
}
