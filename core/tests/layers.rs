//! Core's modules form layers (see the crate docs and docs/design.md): each module
//! may use only the modules listed before it, so there are no import cycles and the layering
//! can be drawn. This test reads the sources and checks every `crate::…` and `super::…` path.

use std::path::{Path, PathBuf};

/// Core's top-level modules, lowest first: model, plugin traits, registry and config, runtime.
const MODULES: &[&str] = &[
    // model
    "registration",
    "units",
    "fragment",
    "chunk",
    "reconnect",
    "redact",
    "durable_file",
    "checkpoint",
    "program",
    "filler_source",
    // plugin traits
    "services",
    "component",
    "source",
    "stage",
    "sink",
    // the plugin API
    "plugin",
    // registry and config
    "node",
    "registry",
    "config",
    // runtime
    "runtime",
    // test harnesses for plugins (and the runtime's benchmark)
    "testing",
];

/// The runtime's own modules, lowest first.
const RUNTIME_MODULES: &[&str] = &[
    "latency",
    "stats",
    "status",
    "pipeline_checkpoint",
    "pacer",
    "stages",
    "chunking",
    "lane_queue",
    "driver",
    "lane",
    "fan_out",
    "reload",
];

/// The config's own modules, lowest first: planning one component is shared by a
/// pipeline's plan and its destinations', so neither imports the other back.
const CONFIG_MODULES: &[&str] = &[
    "error",
    "variables",
    "component_plan",
    "destination",
    "plan",
];

/// Modules whose children are layered among themselves too.
const INNER_LAYERS: &[(&str, &[&str])] =
    &[("runtime", RUNTIME_MODULES), ("config", CONFIG_MODULES)];

fn source_files(directory: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// The module path of a source file relative to `src/`: `runtime/driver/input.rs` →
/// `["runtime", "driver", "input"]`, `runtime/mod.rs` → `["runtime"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts
}

/// Every module path the code of `text` names, resolved from the module `path`: the first
/// segments of `crate::a::b` and of `super::…` paths (comments are skipped: doc links are not
/// imports).
fn named_paths(text: &str, path: &[String]) -> Vec<Vec<String>> {
    let mut named = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (index, _) in code.match_indices("crate::") {
            let rest = &code[index + "crate::".len()..];
            named.push(segments(rest, 2));
        }
        for (index, _) in code.match_indices("super::") {
            // Count the `super::` run this one starts (skip ones inside a run).
            if code[..index].ends_with("super::") {
                continue;
            }
            let mut rest = &code[index..];
            let mut base = path.to_vec();
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            base.extend(segments(rest, 2));
            named.push(base);
        }
    }
    named
}

/// Up to `count` leading lowercase path segments of `rest` (module names, not types).
fn segments(rest: &str, count: usize) -> Vec<String> {
    rest.split("::")
        .take(count)
        .map(|segment| {
            segment
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .take_while(|segment| {
            segment
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase())
        })
        .collect()
}

fn rank(order: &[&str], module: &str) -> Option<usize> {
    order.iter().position(|name| *name == module)
}

#[test]
fn no_module_uses_one_above_it() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&source, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&source).unwrap();
        let path = module_path(relative);
        let Some(own) = path.first() else { continue }; // lib.rs re-exports every layer
        let own_rank = rank(MODULES, own)
            .unwrap_or_else(|| panic!("{} is not in MODULES; place it in a layer", own));
        let text = std::fs::read_to_string(file).unwrap();
        for named in named_paths(&text, &path) {
            let Some(top) = named.first() else { continue };
            let Some(named_rank) = rank(MODULES, top) else {
                continue;
            };
            if named_rank > own_rank {
                violations.push(format!("{} uses {}", relative.display(), named.join("::")));
            }
            // Inside the runtime and the config, the same rule among their own modules.
            let Some((_, inner_order)) = INNER_LAYERS
                .iter()
                .find(|(layered, _)| layered == top && layered == own)
            else {
                continue;
            };
            if let (Some(own_inner), Some(named_inner)) = (path.get(1), named.get(1)) {
                let own_inner_rank = rank(inner_order, own_inner)
                    .unwrap_or_else(|| panic!("{own}::{own_inner} is not in its layer list"));
                if rank(inner_order, named_inner).is_some_and(|r| r > own_inner_rank) {
                    violations.push(format!("{} uses {}", relative.display(), named.join("::")));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_a_violation() {
    let path = vec!["chunk".to_owned()];
    let named = named_paths("use crate::runtime::chunking::BufferPool;", &path);
    assert_eq!(named, [vec!["runtime".to_owned(), "chunking".to_owned()]]);
    let inner = vec![
        "runtime".to_owned(),
        "driver".to_owned(),
        "input".to_owned(),
    ];
    let named = named_paths("use super::super::stats::PipelineStats;", &inner);
    assert_eq!(named, [vec!["runtime".to_owned(), "stats".to_owned()]]);
    // The circle the config had: a destination planned with the pipeline's plan.
    let destination = vec!["config".to_owned(), "destination".to_owned()];
    let named = named_paths("use super::plan::plan_component;", &destination);
    assert_eq!(named[0][..2], ["config".to_owned(), "plan".to_owned()]);
    assert!(rank(CONFIG_MODULES, "plan") > rank(CONFIG_MODULES, "destination"));
}
