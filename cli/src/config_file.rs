//! Finding the plugins and loading the pipeline file, with errors printed for the user.

use std::path::Path;

use streampub_core::{LoadedConfig, Registry};

use crate::logging::report_config_error;
use crate::EXIT_CONFIG_ERROR;

/// The registered plugins, or prints why there are none.
pub(crate) fn registry() -> Result<Registry, u8> {
    Registry::from_inventory().map_err(|error| {
        eprintln!("error: {error}");
        EXIT_CONFIG_ERROR
    })
}

/// Loads the file, or prints why not.
pub(crate) fn load(path: &Path) -> Result<LoadedConfig, u8> {
    let registry = registry()?;
    LoadedConfig::from_file(path, &registry).map_err(|error| {
        report_config_error(&error);
        EXIT_CONFIG_ERROR
    })
}
