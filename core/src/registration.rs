//! The macros a plugin registers with: one line per plugin, in the plugin's module.
//!
//! Each one submits the plugin to the registry (with `inventory`, re-exported here so that a
//! plugin crate does not depend on it: two versions of it would each keep their own list, and
//! the plugins in the other would silently not register) and defines the module's `link()`:
//! the linker keeps only object files something refers to, so a binary calls the plugin
//! crate's `link()`, which calls each module's, to keep their registrations.

/// Registers a source config type under a `type` name; defines `link()` in the module.
///
/// `register_source!(MySourceConfig, "my-source", "What it reads");`
#[macro_export]
macro_rules! register_source {
    ($config:ty, $type_name:expr, $description:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::PluginRegistration::source::<$config>($type_name, $description)
        }
        $crate::__plugin_link!();
    };
}

/// Registers a stage config type under a `type` name; defines `link()` in the module.
///
/// `register_stage!(MyStageConfig, "my-stage", "What it rewrites");`
#[macro_export]
macro_rules! register_stage {
    ($config:ty, $type_name:expr, $description:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::PluginRegistration::stage::<$config>($type_name, $description)
        }
        $crate::__plugin_link!();
    };
}

/// Registers a sink config type under a `type` name; defines `link()` in the module.
///
/// `register_sink!(MySinkConfig, "my-sink", "Where it publishes");`
#[macro_export]
macro_rules! register_sink {
    ($config:ty, $type_name:expr, $description:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::PluginRegistration::sink::<$config>($type_name, $description)
        }
        $crate::__plugin_link!();
    };
}

/// The module's `link()`, shared by the registration macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_link {
    () => {
        /// Keeps this module's plugin registration in the binary (see
        /// `streampub_core::plugin`).
        #[inline(never)]
        pub fn link() {
            ::std::hint::black_box(::std::module_path!());
        }
    };
}
