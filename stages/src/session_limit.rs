//! Planned new sessions for long runs: RTMP and FLV count milliseconds in 32 bits, and ffmpeg
//! writes FLV timestamps as signed, so an output session's timestamps wrap after 2^31 ms
//! (24.8 days). Each session's output starts at 0 (a new ffmpeg, or `fmp4-to-flv`'s own
//! timestamps), so a stage that keeps the timeline ends a session that has carried
//! `session_limit` of media at the next fragment boundary.

use std::time::Duration;

use streampub_core::plugin::{ComponentError, HumanDuration, StageOutput};

/// Default and largest `session_limit`: 24 days, before 2^31 ms.
pub const MAX_SESSION_LIMIT: HumanDuration = HumanDuration::from_secs(24 * 24 * 3600);

/// The default `session_limit`.
pub(crate) fn default_session_limit() -> HumanDuration {
    MAX_SESSION_LIMIT
}

/// Checks a `session_limit` option.
pub(crate) fn validate_session_limit(limit: HumanDuration) -> Result<(), ComponentError> {
    if limit.get().is_zero() || limit > MAX_SESSION_LIMIT {
        return Err(ComponentError::field(
            "session_limit",
            format!("must be more than 0s and at most {MAX_SESSION_LIMIT}"),
        ));
    }
    Ok(())
}

/// Why fragment `name` begins a new session: its session carried `reached` of media.
fn planned_new_session(name: &str, reached: Duration) -> String {
    format!(
        "fragment {name}: the session's timestamps reached {} (session_limit): a planned new \
         session, before FLV's 32-bit millisecond timestamps wrap",
        HumanDuration::millis(reached)
    )
}

/// How much media the current output session has carried, against its limit.
#[derive(Debug, Clone)]
pub(crate) struct SessionLimit {
    limit: Duration,
    /// Where on the timeline the session began.
    start: Option<Duration>,
}

impl Default for SessionLimit {
    fn default() -> Self {
        Self::new(MAX_SESSION_LIMIT.get())
    }
}

impl SessionLimit {
    pub(crate) fn new(limit: Duration) -> Self {
        Self { limit, start: None }
    }

    /// A session begins with the media at `position`.
    pub(crate) fn begin(&mut self, position: Duration) {
        self.start = Some(position);
    }

    /// The session ended (a reconnect): the next one begins with the next media written.
    pub(crate) fn end(&mut self) {
        self.start = None;
    }

    /// At the boundary before fragment `name`, at `position`: whether the session ends here,
    /// its limit reached; if so, the new session is requested in `output`.
    pub(crate) fn ends_before(
        &mut self,
        name: &str,
        position: Duration,
        output: &mut StageOutput,
    ) -> bool {
        let Some(reached) = self.reached(position) else {
            return false;
        };
        output.request_new_session(planned_new_session(name, reached));
        true
    }

    /// At a fragment boundary at `position`: how much media the session has carried, if that
    /// reached the limit (the session then ends and the next begins at `position`). A session
    /// not begun yet begins here.
    fn reached(&mut self, position: Duration) -> Option<Duration> {
        let start = *self.start.get_or_insert(position);
        let carried = position.saturating_sub(start);
        (carried >= self.limit).then(|| {
            self.start = Some(position);
            carried
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_at_the_first_boundary_past_its_limit() {
        let seconds = Duration::from_secs;
        let mut session = SessionLimit::new(seconds(10));
        assert_eq!(session.reached(seconds(100)), None, "begins here");
        assert_eq!(session.reached(seconds(109)), None);
        assert_eq!(session.reached(seconds(112)), Some(seconds(12)));
        assert_eq!(session.reached(seconds(121)), None, "the next began at 112");
        session.end();
        assert_eq!(
            session.reached(seconds(130)),
            None,
            "a reconnect begins anew"
        );
        assert_eq!(session.reached(seconds(140)), Some(seconds(10)));
    }
}
