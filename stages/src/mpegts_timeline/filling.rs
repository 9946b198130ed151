//! Filler between MPEG-TS files while upstream is late. Each loop of the clip is played as if
//! it were a file: its packets, moved onto the stream's PIDs, go through the stage's own
//! rewriting, so the filler's timestamps, PCR and continuity counters follow the stream's, and
//! the next file starts where the filler ends. A loop stops at a PES boundary once the wall
//! clock's `until` is reached. H.264 carries its parameter sets before each keyframe and AAC
//! is ADTS, so decoders switch between the filler and the stream without any header.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use streampub_core::plugin::{StageError, StageOutput};

use super::filler_clip::{read_ts_clip, Media, TsClip};
use super::mpegts_file::MpegtsFile;
use super::stream_state::{FillerRun, MpegtsTimeline};
use crate::filler::ClipContainer;
use crate::formats::mpegts::{PACKET_LEN, TICKS_PER_SECOND};
use crate::timeline_engine::{OpenFile, TimelineFormat};

fn ticks_of(time: Duration) -> u64 {
    u64::try_from(time.as_nanos() * u128::from(TICKS_PER_SECOND) / 1_000_000_000)
        .unwrap_or(u64::MAX)
}

/// Sets a packet's PID.
fn set_pid(packet: &mut [u8; PACKET_LEN], pid: u16) {
    packet[1] = (packet[1] & 0xe0) | ((pid >> 8) as u8 & 0x1f);
    packet[2] = pid as u8;
}

impl MpegtsTimeline {
    /// After a whole file, starts making the filler for the stream if it still needs one.
    pub(super) fn prepare_filler(&mut self) {
        let (Some(probe), Some(program)) = (self.probe.take(), &self.program) else {
            return;
        };
        match probe.shape(program) {
            Ok(shape) => self
                .clip
                .prepare(shape, ClipContainer::MpegTs, read_ts_clip),
            Err(problem) => self.clip.cannot_match(format!(
                "no filler can be made for this stream: {problem}; filler is made for H.264 \
                 and AAC (set `filler: none` to wait for upstream without one)"
            )),
        }
    }

    /// Plays the filler up to `until` on the timeline.
    pub(super) fn fill_until(
        &mut self,
        until: Duration,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let filler_error = |problem: String| StageError::new(format!("filler: {problem}"));
        let program = self
            .program
            .as_ref()
            .ok_or_else(|| filler_error("no media has been written yet".to_owned()))?;
        // While the clip is still being made, the gap waits for it (the next call plays it).
        let Some(clip) = self.clip.ready().map_err(filler_error)? else {
            return Ok(());
        };
        let clip: Arc<TsClip> = Arc::clone(clip);
        let (video_pid, audio_pid) = program.h264_and_aac_pids().map_err(filler_error)?;
        let until = ticks_of(until);
        let position = self.position;
        let run = self
            .filler_run
            .get_or_insert_with(|| FillerRun::new(position, until));
        run.until = run.until.max(until);
        let mut buffer = Vec::new();
        loop {
            let run = self.filler_run.as_mut().expect("set above");
            let item = &clip.packets[run.next];
            if item
                .starts_at
                .is_some_and(|start| run.loop_start + start >= until)
            {
                break;
            }
            run.next += 1;
            let loop_ended = run.next == clip.packets.len();
            // A loop begins: the clip is a file whose clock zero is known.
            let mut loop_file = run.loop_file.take().unwrap_or_else(|| {
                OpenFile::new("filler", Self::USABLE, MpegtsFile::starting_at(clip.zero))
            });
            let pid = match item.media {
                Media::Video => video_pid,
                Media::Audio => audio_pid,
            };
            // The clip was made for the stream's kinds of track; after a rewind to before a
            // stream change they may differ, and a packet without a stream is left out.
            let taken = match pid {
                Some(pid) => {
                    let mut packet = item.packet;
                    set_pid(&mut packet, pid);
                    self.take_packet(&mut loop_file, packet, &mut buffer, output)
                }
                None => Ok(()),
            };
            self.filler_run.as_mut().expect("set above").loop_file = Some(loop_file);
            taken?;
            if loop_ended {
                let loop_start = self.filler_run.as_ref().map_or(0, |run| run.loop_start);
                self.end_filler_loop();
                if self.position <= loop_start {
                    // A loop without duration would never reach `until`.
                    self.filler_run = None;
                    output.push_chunk(Bytes::from(buffer));
                    return Err(filler_error("the filler clip has no duration".to_owned()));
                }
                let position = self.position;
                let run = self.filler_run.as_mut().expect("set above");
                run.next = 0;
                run.loop_start = position;
            }
        }
        output.push_chunk(Bytes::from(buffer));
        Ok(())
    }

    /// Ends the loop being played: the timeline moves past it.
    fn end_filler_loop(&mut self) {
        let loop_file = self
            .filler_run
            .as_mut()
            .and_then(|run| run.loop_file.take());
        if let Some(file) = loop_file {
            self.position += file.duration();
        }
    }

    /// Content resumes (or the stream is resent): the filler ends where it got to, and the
    /// next file starts after it, at the latest `until` filled to or later.
    pub(super) fn end_filler(&mut self) {
        self.end_filler_loop();
        if let Some(run) = self.filler_run.take() {
            self.position = self.position.max(run.until);
        }
    }

    /// A new session begins in the middle of a gap: it gets the stream's program tables first
    /// (its reader knows nothing yet), then the filler from the clip's first keyframe.
    pub(super) fn restart_filler(&mut self, output: &mut StageOutput) {
        if self.filler_run.is_none() {
            return;
        }
        let until = self.filler_run.as_ref().map_or(0, |run| run.until);
        self.end_filler();
        self.filler_run = Some(FillerRun::new(self.position, until));
        self.push_tables(output);
    }
}
