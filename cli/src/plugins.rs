//! `streampub plugins`: what can be used as a `type` in a pipeline file.

use serde_json::json;
use streampub_core::OptionDoc;
use streampub_core::{PluginKind, Registry};

use crate::{write_stdout, EXIT_CONFIG_ERROR};

pub(crate) fn list(as_json: bool) -> u8 {
    let registry = match Registry::from_inventory() {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_CONFIG_ERROR;
        }
    };
    let file_options = [
        (
            "Pipeline file (top level)",
            "file",
            streampub_core::top_level_options(),
        ),
        (
            "Each pipeline (beside source, stages, sink)",
            "pipeline",
            streampub_core::pipeline_options(),
        ),
        (
            "Every destination (beside its sink's options, in `sink:` or each of `sinks:`)",
            "destination",
            streampub_core::destination_options(),
        ),
    ];
    if as_json {
        // The pipeline file's own options, beside the plugins': kind `file` (type
        // `top-level`), kind `pipeline` (type `pipeline`) and kind `destination` (type
        // `destination`).
        let sections = file_options.iter().map(|(title, kind, options)| {
            let name = match *kind {
                "file" => "top-level",
                other => other,
            };
            json!({"kind": kind, "type": name, "summary": title, "options": options})
        });
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
            .chain(sections)
            .collect();
        let text = serde_json::to_string_pretty(&plugins).expect("plain data") + "\n";
        return write_stdout(text.as_bytes());
    }
    let mut text = String::new();
    for (title, _, options) in &file_options {
        text += &format!("{title}:\n");
        describe_options(options, 0, &mut text);
        text.push('\n');
    }
    for (kind, title) in [
        (PluginKind::Source, "Sources"),
        (PluginKind::Stage, "Stages"),
        (PluginKind::Sink, "Sinks"),
    ] {
        text += &format!("{title}:\n");
        for plugin in registry.iter().filter(|plugin| plugin.kind() == kind) {
            text += &format!("  {:<14} {}\n", plugin.name, plugin.summary);
            describe_options(&plugin.options(), 0, &mut text);
        }
        text.push('\n');
    }
    write_stdout(text.as_bytes())
}

/// `, default 30s` (the value between `quote`s), `, required`, or nothing.
pub(crate) fn default_or_required(option: &OptionDoc, quote: &str) -> String {
    match &option.default {
        Some(default) => format!(", default {quote}{default}{quote}"),
        None if option.required => ", required".to_owned(),
        None => String::new(),
    }
}

/// Each option with its type, default and description, indented under its heading (and the
/// options it holds under it).
fn describe_options(options: &[OptionDoc], depth: usize, text: &mut String) {
    let indent = "    ".repeat(depth);
    for option in options {
        let default = default_or_required(option, "");
        *text += &format!(
            "{indent}      {} ({}{default})\n",
            option.name, option.value_type
        );
        if !option.description.is_empty() {
            *text += &format!(
                "{indent}          {}\n",
                option.description.replace('\n', " ")
            );
        }
        describe_options(&option.options, depth + 1, text);
    }
}
