//! `streampub plugins`: what can be used as a `type` in a pipeline file.

use serde_json::json;
use streampub_core::{PluginKind, Registry};

use crate::{EXIT_CONFIG_ERROR, EXIT_SUCCESS};

pub(crate) fn list(as_json: bool) -> u8 {
    let registry = match Registry::from_inventory() {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_CONFIG_ERROR;
        }
    };
    if as_json {
        let plugins: Vec<_> = registry
            .iter()
            .map(|plugin| {
                json!({
                    "kind": plugin.kind(),
                    "type": plugin.name,
                    "summary": plugin.summary,
                    "options": plugin.options(),
                    "schema": (plugin.options_schema)(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&plugins).expect("plain data")
        );
        return EXIT_SUCCESS;
    }
    for (kind, title) in [
        (PluginKind::Source, "Sources"),
        (PluginKind::Stage, "Stages"),
        (PluginKind::Sink, "Sinks"),
    ] {
        println!("{title}:");
        for plugin in registry.iter().filter(|plugin| plugin.kind() == kind) {
            println!("  {:<14} {}", plugin.name, plugin.summary);
            for option in plugin.options() {
                let default = match &option.default {
                    Some(default) => format!(", default {default}"),
                    None if option.required => ", required".to_owned(),
                    None => String::new(),
                };
                println!("      {} ({}{default})", option.name, option.value_type);
                if !option.description.is_empty() {
                    println!("          {}", option.description.replace('\n', " "));
                }
            }
        }
        println!();
    }
    EXIT_SUCCESS
}
