//! The `rtmp` sink itself: FLV tags from the timeline stage go to the session's task; what
//! the session has confirmed is what the runtime hears.

use std::time::{Duration, Instant};

use streampub_core::plugin::{
    async_trait, Bytes, FragmentInfo, Pacing, ReconnectPolicy, SessionReason, Sink,
    SinkCapabilities, SinkError,
};
use streampub_flv::{FlvTag, FlvTagReader};

use super::connection::{Connection, ConnectionSettings, Outgoing};

/// Publishes to an RTMP server over its own connection.
pub(crate) struct RtmpSink {
    pub(crate) settings: ConnectionSettings,
    pub(crate) policy: ReconnectPolicy,
    pub(crate) pacing: Option<Pacing>,
    /// How long a clean stop may take to have everything confirmed.
    pub(crate) flush_timeout: Duration,
    pub(crate) connection: Option<Connection>,
    pub(crate) reader: FlvTagReader,
    pub(crate) tags: Vec<FlvTag>,
}

impl RtmpSink {
    /// The session, started with the first bytes to send.
    fn connection(&mut self) -> &mut Connection {
        self.connection
            .get_or_insert_with(|| Connection::open(&self.settings))
    }

    /// Drops the session; the next one follows an outage if this one was publishing.
    fn drop_session(&mut self) {
        if let Some(connection) = self.connection.take() {
            if connection.progress.lock().unwrap().live_since.is_some() {
                self.settings.after_outage = true;
            }
        }
    }

    /// The session's failure, if it has failed.
    fn failure(&self) -> Option<SinkError> {
        let connection = self.connection.as_ref()?;
        connection.progress.lock().unwrap().failure.clone()
    }

    async fn hand_over(&mut self, outgoing: Outgoing) -> Result<(), SinkError> {
        if let Some(error) = self.failure() {
            return Err(error);
        }
        let sent = self.connection().outgoing.send(outgoing).await;
        if sent.is_err() {
            return Err(self
                .failure()
                .unwrap_or_else(|| SinkError::retryable("the RTMP session ended")));
        }
        Ok(())
    }

    /// Ends the session cleanly: unpublishes and waits until what it sent is confirmed. On
    /// failure the session stays, so that the runtime can ask what it confirmed.
    async fn finish_session(&mut self) -> Result<(), SinkError> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        let flush_timeout = self.flush_timeout;
        let finished = tokio::time::timeout(flush_timeout, async {
            let _ = connection.outgoing.send(Outgoing::Close).await;
            connection.finished(flush_timeout).await
        })
        .await
        .unwrap_or(false);
        // A session still letting go of its socket (`closing`) has had everything confirmed.
        let confirmed = {
            let progress = connection.progress.lock().unwrap();
            progress.failure.is_none() && progress.unconfirmed() == 0
        };
        if !finished && !confirmed {
            return Err(SinkError::retryable(format!(
                "the RTMP server did not take the end of the stream within flush_timeout ({} s)",
                flush_timeout.as_secs()
            )));
        }
        let result = {
            let progress = connection.progress.lock().unwrap();
            match &progress.failure {
                Some(error) => Err(error.clone()),
                None if progress.unconfirmed() > 0 => Err(SinkError::retryable(
                    "the RTMP session ended before the server confirmed everything",
                )),
                None => Ok(()),
            }
        };
        if result.is_ok() {
            self.connection = None;
        }
        result
    }
}

#[async_trait]
impl Sink for RtmpSink {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            file_ranges: false,
            pacing: self.pacing,
            reconnect: self.policy,
        }
    }

    async fn begin_fragment(&mut self, _fragment: &FragmentInfo) -> Result<(), SinkError> {
        match self.failure() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.reader
            .push(chunk, &mut self.tags)
            .map_err(|error| SinkError::fatal(error.to_string()))?;
        let tags = std::mem::take(&mut self.tags);
        for tag in tags {
            self.hand_over(Outgoing::Tag(tag)).await?;
        }
        Ok(())
    }

    fn confirmed_output_time(&mut self) -> Option<Duration> {
        let connection = self.connection.as_ref()?;
        connection.progress.lock().unwrap().confirmed_output_time()
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        // Counted before it is queued: the runtime asks at once what is unconfirmed.
        self.connection().progress.lock().unwrap().fragment_queued();
        self.hand_over(Outgoing::FragmentEnd).await
    }

    async fn abort_fragment(&mut self) -> Result<(), SinkError> {
        // What was sent of it stays sent; a tag cut short is dropped.
        self.reader.reset();
        Ok(())
    }

    async fn start_session(&mut self, reason: SessionReason) -> Result<(), SinkError> {
        self.reader.reset();
        match reason {
            // The runtime sends again everything not confirmed: the old session just goes.
            SessionReason::Reconnect => {
                self.drop_session();
                Ok(())
            }
            // What the old session took must be confirmed before the new one begins.
            SessionReason::StreamChanged { .. } => self.finish_session().await,
        }
    }

    fn unconfirmed(&mut self) -> usize {
        self.connection.as_ref().map_or(0, |connection| {
            connection.progress.lock().unwrap().unconfirmed()
        })
    }

    fn output_live_since(&mut self) -> Option<Instant> {
        let connection = self.connection.as_ref()?;
        connection.progress.lock().unwrap().live_since
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.finish_session().await
    }
}
