//! The `directory` source: publishes the files of a directory in name order.
//!
//! It lists the directory, sends every complete file (see `scan::SettleTracker`) in
//! numeric-aware name order, and waits for the next change: an inotify event, the settle time of
//! the file it waits for, or the periodic rescan. Files are remembered as published only when
//! their sink has fully taken them; then `on_done` is applied.

mod config;
mod scan;
mod source;

use streampub_core::plugin::{
    async_trait, check_duration, CheckpointFile, ComponentContext, ComponentError, Source,
    SourceConfig,
};
use streampub_core::register_source;

pub use self::config::{DirectorySourceConfig, OnDone};
use self::source::DirectorySource;
use crate::name_order::compile_name_globs;
pub use crate::name_order::Globs;

register_source!(
    DirectorySourceConfig,
    "directory",
    "Publishes the files of a directory in name order, following new ones as they complete",
);

#[async_trait]
impl SourceConfig for DirectorySourceConfig {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError> {
        let path = context.resolve_path(&self.path);
        if !path.is_dir() {
            return Err(ComponentError::field(
                "path",
                format!(
                    "{} is not a directory; create it or fix `path`",
                    path.display()
                ),
            ));
        }
        compile_name_globs(&self.pattern, self.init_pattern.as_ref())?;
        match (self.on_done, &self.done_dir) {
            (OnDone::Move, None) => Err(ComponentError::field(
                "on_done",
                "`on_done: move` needs `done_dir`, the directory to move published files into",
            )),
            (OnDone::Keep | OnDone::Delete, Some(_)) => Err(ComponentError::field(
                "done_dir",
                "`done_dir` is only used with `on_done: move`",
            )),
            _ => Ok(()),
        }?;
        check_duration("settle", self.settle, true)?;
        check_duration("empty_timeout", self.empty_timeout, true)?;
        check_duration("poll_interval", self.poll_interval, false)
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Source>, ComponentError> {
        let done_dir = self.done_dir.as_ref().map(|dir| context.resolve_path(dir));
        if let Some(dir) = &done_dir {
            std::fs::create_dir_all(dir).map_err(|error| {
                ComponentError::field(
                    "done_dir",
                    format!("cannot create {}: {error}", dir.display()),
                )
            })?;
        }
        let (pattern, init_pattern) =
            compile_name_globs(&self.pattern, self.init_pattern.as_ref())?;
        Ok(Box::new(DirectorySource {
            pipeline: context.pipeline.clone(),
            directory: context.resolve_path(&self.path),
            pattern,
            init_pattern,
            follow: self.follow,
            settle: self.settle.get(),
            empty_timeout: self.empty_timeout.get(),
            on_done: self.on_done,
            done_dir,
            poll_interval: self.poll_interval.get(),
            checkpoint: context.state_file("directory").map(CheckpointFile::new),
        }))
    }
}
