//! Listing a directory's candidate files and deciding when each one is complete.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::name_order::{is_ignored, publication_order, NamePatterns};

/// A file that may be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) length: u64,
    pub(crate) modified: SystemTime,
}

/// What a scan found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Regular files, in numeric-aware name order.
    pub(crate) candidates: Vec<Candidate>,
    /// Entries matching the pattern that cannot be published (a dangling symlink, one that
    /// cannot be examined), with why.
    pub(crate) unusable: Vec<(String, String)>,
}

/// Regular files matching `pattern`, minus dotfiles and `*.tmp`/`*.part`, in numeric-aware
/// name order except that those matching `first` come before all others, and the matching
/// entries that cannot be used.
pub(crate) fn scan(
    directory: &Path,
    pattern: &NamePatterns,
    first: Option<&NamePatterns>,
) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(directory)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_ignored(&name) || !pattern.matches(&name) {
            continue;
        }
        // Symlinks are followed. A file that vanished between listing and stat is simply not
        // a candidate; a link whose target is missing, or an entry that cannot be examined,
        // is reported.
        let metadata = match std::fs::metadata(entry.path()) {
            Ok(metadata) => metadata,
            Err(error) => {
                match std::fs::symlink_metadata(entry.path()) {
                    Err(vanished) if vanished.kind() == io::ErrorKind::NotFound => {}
                    Ok(link) if link.file_type().is_symlink() => listing.unusable.push((
                        name,
                        format!("it is a symbolic link whose target cannot be read ({error})"),
                    )),
                    _ => listing
                        .unusable
                        .push((name, format!("it cannot be examined ({error})"))),
                }
                continue;
            }
        };
        if !metadata.is_file() {
            continue;
        }
        listing.candidates.push(Candidate {
            path: entry.path(),
            name,
            length: metadata.len(),
            modified: metadata.modified()?,
        });
    }
    listing
        .candidates
        .sort_by(|a, b| publication_order(&a.name, &b.name, first));
    Ok(listing)
}

/// Whether a candidate is complete, or how long to wait before looking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    WaitFor(Duration),
    /// The file has no content yet (whoever created it has not written it): files after it
    /// wait, at most this much longer; then it is offered as it is, and fails alone as empty.
    Empty(Duration),
}

/// Tracks how long each file has stayed unchanged.
#[derive(Debug)]
pub(crate) struct SettleTracker {
    settle: Duration,
    empty_timeout: Duration,
    /// Per file: the length and mtime last seen, and since when they have been the same.
    observed: HashMap<String, (u64, SystemTime, Instant)>,
    /// Files that were renamed into the directory: complete at once.
    renamed_in: HashSet<String>,
}

impl SettleTracker {
    pub(crate) fn new(settle: Duration, empty_timeout: Duration) -> Self {
        Self {
            settle,
            empty_timeout,
            observed: HashMap::new(),
            renamed_in: HashSet::new(),
        }
    }

    pub(crate) fn renamed_in(&mut self, name: String) {
        self.renamed_in.insert(name);
    }

    /// A file is complete once renamed into place, or once its length and mtime have not
    /// changed for `settle` (measured by us, or by its mtime for files that were already old
    /// when first seen). An empty file is complete only once it has stayed empty for
    /// `empty_timeout`, measured the same way.
    pub(crate) fn check(&mut self, candidate: &Candidate, now: Instant) -> Readiness {
        if candidate.length > 0 && self.renamed_in.contains(&candidate.name) {
            return Readiness::Ready;
        }
        let entry = self.observed.entry(candidate.name.clone()).or_insert((
            candidate.length,
            candidate.modified,
            now,
        ));
        if (entry.0, entry.1) != (candidate.length, candidate.modified) {
            *entry = (candidate.length, candidate.modified, now);
        }
        let unchanged_for = now.duration_since(entry.2);
        let age = SystemTime::now()
            .duration_since(candidate.modified)
            .unwrap_or_default();
        let stable_for = unchanged_for.max(age);
        match candidate.length {
            0 if stable_for >= self.empty_timeout => Readiness::Ready,
            0 => Readiness::Empty(self.empty_timeout - stable_for),
            _ if stable_for >= self.settle => Readiness::Ready,
            _ => Readiness::WaitFor(self.settle - stable_for),
        }
    }

    /// Forgets a file that is published or gone.
    pub(crate) fn forget(&mut self, name: &str) {
        self.observed.remove(name);
        self.renamed_in.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_ignores_temporary_names_and_applies_the_pattern() {
        let directory = tempfile::tempdir().unwrap();
        for name in [
            "b-2.mp4",
            "b-10.mp4",
            ".hidden.mp4",
            "c.mp4.part",
            "d.tmp",
            "notes.txt",
        ] {
            std::fs::write(directory.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(directory.path().join("sub.mp4")).unwrap();
        let pattern = NamePatterns(vec![glob::Pattern::new("*.mp4").unwrap()]);
        let names: Vec<String> = scan(directory.path(), &pattern, None)
            .unwrap()
            .candidates
            .into_iter()
            .map(|candidate| candidate.name)
            .collect();
        assert_eq!(names, vec!["b-2.mp4", "b-10.mp4"]);
    }

    #[test]
    fn init_files_come_first_whatever_their_names_sort_as() {
        let directory = tempfile::tempdir().unwrap();
        // ffmpeg's dash muxer: the init segment sorts after the chunks by name.
        for name in [
            "chunk-stream0-00002.m4s",
            "init-stream0.m4s",
            "chunk-stream0-00001.m4s",
            "manifest.mpd",
        ] {
            std::fs::write(directory.path().join(name), b"x").unwrap();
        }
        // ffmpeg's hls muxer writes `init.mp4` beside `*.m4s` segments: two globs.
        std::fs::write(directory.path().join("init.mp4"), b"x").unwrap();
        let globs = |globs: &[&str]| {
            NamePatterns(
                globs
                    .iter()
                    .map(|glob| glob::Pattern::new(glob).unwrap())
                    .collect(),
            )
        };
        let pattern = globs(&["*.m4s", "init.mp4"]);
        let first = globs(&["init*"]);
        let names: Vec<String> = scan(directory.path(), &pattern, Some(&first))
            .unwrap()
            .candidates
            .into_iter()
            .map(|candidate| candidate.name)
            .collect();
        assert_eq!(
            names,
            [
                "init-stream0.m4s",
                "init.mp4",
                "chunk-stream0-00001.m4s",
                "chunk-stream0-00002.m4s"
            ]
        );
    }

    #[test]
    fn a_file_is_ready_once_unchanged_for_settle() {
        let mut tracker = SettleTracker::new(Duration::from_millis(500), Duration::from_secs(60));
        let start = Instant::now();
        let fresh = Candidate {
            name: "f".into(),
            path: "f".into(),
            length: 10,
            modified: SystemTime::now(),
        };
        assert!(matches!(
            tracker.check(&fresh, start),
            Readiness::WaitFor(_)
        ));
        let grown = Candidate {
            length: 20,
            ..fresh.clone()
        };
        let later = start + Duration::from_millis(400);
        assert!(
            matches!(tracker.check(&grown, later), Readiness::WaitFor(_)),
            "growth restarts the clock"
        );
        assert_eq!(
            tracker.check(&grown, later + Duration::from_millis(500)),
            Readiness::Ready
        );

        let old = Candidate {
            name: "old".into(),
            modified: SystemTime::now() - Duration::from_secs(60),
            ..fresh.clone()
        };
        assert_eq!(tracker.check(&old, start), Readiness::Ready);

        tracker.renamed_in("renamed".into());
        let renamed = Candidate {
            name: "renamed".into(),
            ..fresh
        };
        assert_eq!(tracker.check(&renamed, start), Readiness::Ready);
    }

    #[test]
    fn an_empty_file_is_offered_once_empty_for_empty_timeout() {
        let mut tracker = SettleTracker::new(Duration::ZERO, Duration::from_secs(60));
        let start = Instant::now();
        let empty = Candidate {
            name: "batch-1.mp4".into(),
            path: "batch-1.mp4".into(),
            length: 0,
            modified: SystemTime::now(),
        };
        // Renamed in or not, an empty file waits (settle 0 s notwithstanding).
        tracker.renamed_in("batch-1.mp4".into());
        assert!(
            matches!(tracker.check(&empty, start), Readiness::Empty(left) if left > Duration::from_secs(59))
        );
        assert_eq!(
            tracker.check(&empty, start + Duration::from_secs(61)),
            Readiness::Ready
        );
        // Left empty by a writer that crashed long ago: offered at once.
        let old = Candidate {
            name: "old".into(),
            modified: SystemTime::now() - Duration::from_secs(600),
            ..empty.clone()
        };
        assert_eq!(tracker.check(&old, start), Readiness::Ready);
        // Written after all: complete as any other file.
        let written = Candidate {
            length: 10,
            ..empty
        };
        assert_eq!(
            tracker.check(&written, start + Duration::from_secs(62)),
            Readiness::Ready
        );
    }
}
