//! How a sink reconnects after a failure: the options every sink with sessions shares
//! (`process`, `ffmpeg-rtmp`, `rtmp`), one definition, one set of docs, one check.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::check_duration;
use streampub_core::plugin::{ComponentError, HumanDuration, ReconnectPolicy};
use streampub_core::plugin::{
    DEFAULT_MAX_RECONNECT_ATTEMPTS, DEFAULT_MAX_RECONNECT_DELAY, DEFAULT_RECONNECT_DELAY,
};

/// Reconnects after a failure. Written beside the sink's own options (serde `flatten`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ReconnectOptions {
    /// New sessions allowed after one failure before the pipeline fails; 0 means forever.
    #[serde(default = "default_max_reconnect_attempts")]
    pub max_reconnect_attempts: u32,
    /// Wait before the first new session; each next wait is 1.5 times longer, with jitter. At
    /// most a day, like every duration.
    #[serde(default = "default_reconnect_delay")]
    pub reconnect_delay: HumanDuration,
    /// Longest wait between new sessions.
    #[serde(default = "default_max_reconnect_delay")]
    pub max_reconnect_delay: HumanDuration,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        Self {
            max_reconnect_attempts: default_max_reconnect_attempts(),
            reconnect_delay: default_reconnect_delay(),
            max_reconnect_delay: default_max_reconnect_delay(),
        }
    }
}

fn default_max_reconnect_attempts() -> u32 {
    DEFAULT_MAX_RECONNECT_ATTEMPTS
}

fn default_reconnect_delay() -> HumanDuration {
    DEFAULT_RECONNECT_DELAY
}

fn default_max_reconnect_delay() -> HumanDuration {
    DEFAULT_MAX_RECONNECT_DELAY
}

impl ReconnectOptions {
    /// The policy the runtime follows; an error names the option that is wrong.
    pub fn policy(&self) -> Result<ReconnectPolicy, ComponentError> {
        check_duration("reconnect_delay", self.reconnect_delay, true)?;
        check_duration("max_reconnect_delay", self.max_reconnect_delay, true)?;
        if self.max_reconnect_delay < self.reconnect_delay {
            return Err(ComponentError::field(
                "max_reconnect_delay",
                format!(
                    "must be at least reconnect_delay ({})",
                    self.reconnect_delay
                ),
            ));
        }
        Ok(ReconnectPolicy::from_option(
            self.max_reconnect_attempts,
            self.reconnect_delay.get(),
            self.max_reconnect_delay.get(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_wait_is_at_least_the_first() {
        ReconnectOptions::default().policy().unwrap();
        let inverted = ReconnectOptions {
            reconnect_delay: HumanDuration::from_secs(10),
            max_reconnect_delay: HumanDuration::from_secs(1),
            ..ReconnectOptions::default()
        };
        assert_eq!(
            inverted.policy().unwrap_err().field.as_deref(),
            Some("max_reconnect_delay")
        );
    }
}
