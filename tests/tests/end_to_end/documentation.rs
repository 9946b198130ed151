//! The documentation says what the code does: the generated reference is current, ARCHITECTURE
//! lists every crate with its dependencies, the guide stays a guide, and every link leads to a
//! page and a heading that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use streampub_tests::{streampub_binary, workspace_root};

#[test]
fn the_reference_is_what_the_code_documents() {
    let reference = workspace_root().join("docs/reference");
    let output = Command::new(streampub_binary())
        .args(["docs", "--check", "--out"])
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_changed_option_doc_makes_the_check_fail_and_docs_writes_it_anew() {
    let directory = tempfile::tempdir().unwrap();
    let run = |check: bool| {
        let mut command = Command::new(streampub_binary());
        command.arg("docs").arg("--out").arg(directory.path());
        if check {
            command.arg("--check");
        }
        command.output().unwrap()
    };
    assert!(run(false).status.success());
    assert!(run(true).status.success());
    let sources = directory.path().join("sources.md");
    let text = std::fs::read_to_string(&sources).unwrap();
    std::fs::write(&sources, text.replacen("glob", "globe", 1)).unwrap();
    let notice = text.lines().next().unwrap();
    std::fs::write(
        directory.path().join("gone.md"),
        format!("{notice}\n\na plugin that was removed\n"),
    )
    .unwrap();
    std::fs::write(directory.path().join("notes.md"), "written by hand\n").unwrap();
    let stale = run(true);
    assert_eq!(stale.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(
        stderr.contains("sources.md") && stderr.contains("gone.md"),
        "{stderr}"
    );
    assert!(run(false).status.success());
    assert!(run(true).status.success());
    assert!(!directory.path().join("gone.md").exists());
    assert!(
        directory.path().join("notes.md").exists(),
        "a page it did not write stays"
    );
    // A guide's own README.md where the reference would go: nothing is written over it.
    let guide = tempfile::tempdir().unwrap();
    std::fs::write(guide.path().join("README.md"), "# My guide\n").unwrap();
    let refused = Command::new(streampub_binary())
        .args(["docs", "--out"])
        .arg(guide.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(guide.path().join("README.md")).unwrap(),
        "# My guide\n"
    );
    assert!(!guide.path().join("sources.md").exists());
}

#[test]
fn architecture_lists_every_crate_with_the_crates_it_depends_on() {
    let metadata = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(metadata.status.success());
    let metadata: Value = serde_json::from_slice(&metadata.stdout).unwrap();
    let root = workspace_root();
    let mut actual = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap());
        let directory = manifest
            .parent()
            .unwrap()
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned()
            + "/";
        let dependencies: BTreeSet<String> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dependency| dependency["kind"].is_null())
            .map(|dependency| dependency["name"].as_str().unwrap().to_owned())
            .filter(|name| name.starts_with("streampub"))
            .collect();
        let name = package["name"].as_str().unwrap().to_owned();
        actual.insert(name, (directory, dependencies));
    }

    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut documented = BTreeMap::new();
    for row in architecture.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let [name, directory, dependencies] = cells[..] else {
            panic!("a crate row has three cells: {row}");
        };
        let dependencies: BTreeSet<String> = dependencies
            .split(',')
            .map(|name| name.trim().trim_matches('`').to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        documented.insert(
            name.trim_matches('`').to_owned(),
            (directory.trim_matches('`').to_owned(), dependencies),
        );
    }
    assert_eq!(
        documented, actual,
        "ARCHITECTURE.md's crate table (left) against Cargo.toml (right)"
    );
}

#[test]
fn the_guide_is_short_and_every_link_leads_to_a_page_and_heading_that_exist() {
    let root = workspace_root();
    let guide = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        guide.lines().count() < 500,
        "README.md is a guide of under 500 lines; details go to docs/"
    );
    let mut pages = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    markdown_files(&root.join("docs"), &mut pages);
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in relative_links(&text) {
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let found = match anchor {
                _ if !linked.exists() => false,
                Some(anchor) => std::fs::read_to_string(&linked)
                    .map(|text| anchors(&text).contains(anchor))
                    .unwrap_or(false),
                None => true,
            };
            if !found {
                broken.push(format!(
                    "{}: {target}",
                    page.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
}

fn markdown_files(directory: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "md") {
            files.push(path);
        }
    }
}

/// The targets of `[text](target)` links outside code blocks that stay in the repository.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                links.push(target.to_owned());
            }
            rest = &rest[end..];
        }
    }
    links
}

/// The anchors of a page's headings, as GitHub makes them: lower case, punctuation other than
/// `-` and `_` dropped, spaces as `-`, a repeated heading numbered.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !in_code) else {
            continue;
        };
        let title = heading.trim_start_matches('#').trim();
        let anchor: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = anchor.clone();
        let mut number = 1;
        while !anchors.insert(candidate.clone()) {
            candidate = format!("{anchor}-{number}");
            number += 1;
        }
    }
    anchors
}
