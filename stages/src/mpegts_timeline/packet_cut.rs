//! A file sent again from inside ([`streampub_core::plugin::Stage::resume_fragment`]), cut packet by
//! packet: the elementary streams' packets go through a [`ResumeCut`] whose units are PES
//! packets, each packet with the decode time of the PES it belongs to, so a PES is sent or
//! dropped whole. Tables (PAT, PMT) and other packets always pass.
//!
//! The streams' packets interleave, so a PES whose start was dropped (it began before the
//! keyframe, or its start was held and let go when a later keyframe came) may still have
//! packets after it: until its PID begins its next PES, those are dropped too. A PID that
//! never begins a timestamped PES (SCTE-35 sections, say) passes unchanged.

use std::collections::HashSet;

use std::collections::HashMap;
use std::time::Duration;

use crate::formats::mpegts::PACKET_LEN;
use crate::resume_cut::ResumeCut;

/// A packet to send, with its PES's decode time when it begins one (marked for pacing).
pub(super) type TimedPacket = (Option<Duration>, [u8; PACKET_LEN]);

#[derive(Debug)]
pub(super) struct PacketCut {
    /// `None` once the keyframe to resume at is known and passed.
    cut: Option<ResumeCut<TimedPacket>>,
    /// Per PID, the decode time of the PES being read.
    pes_times: HashMap<u16, Duration>,
    /// The PIDs whose PES being read lost its start: the rest of it goes too.
    dropped: HashSet<u16>,
    /// The keyframe's time, once the cut is done: packets of an earlier PES are dropped.
    resumed_at: Option<Duration>,
}

impl PacketCut {
    pub(super) fn new(offset: Duration) -> Self {
        Self {
            cut: Some(ResumeCut::new(offset)),
            pes_times: HashMap::new(),
            dropped: HashSet::new(),
            resumed_at: None,
        }
    }

    /// Takes a packet of the elementary stream `pid`; `pes_start`, for a packet that begins a
    /// PES, is its decode time and whether a decoder can start there. Pushes onto `send` what
    /// goes out now.
    pub(super) fn take(
        &mut self,
        pid: u16,
        pes_start: Option<(Duration, bool)>,
        packet: [u8; PACKET_LEN],
        send: &mut Vec<TimedPacket>,
    ) {
        let time = match pes_start {
            Some((time, _)) => {
                self.pes_times.insert(pid, time);
                self.dropped.remove(&pid);
                time
            }
            None => match self.pes_times.get(&pid) {
                Some(time) => *time,
                None => return send.push((None, packet)),
            },
        };
        if self.dropped.contains(&pid) {
            return;
        }
        let unit = (pes_start.map(|(time, _)| time), packet);
        let Some(cut) = &mut self.cut else {
            if self.resumed_at.is_some_and(|keyframe| time < keyframe) {
                self.dropped.insert(pid);
            } else {
                send.push(unit);
            }
            return;
        };
        let random_access = pes_start.is_some_and(|(_, random_access)| random_access);
        let keyframe_before = cut.keyframe_time();
        if cut.take(time, random_access, unit, send) {
            self.resumed_at = cut.keyframe_time();
            self.cut = None;
            return;
        }
        match cut.keyframe_time() {
            // A new keyframe: what was held went, and with it the starts of the PES in
            // progress on the other PIDs.
            Some(keyframe) if Some(keyframe) != keyframe_before => {
                self.dropped
                    .extend(self.pes_times.keys().copied().filter(|other| *other != pid));
            }
            Some(keyframe) if time < keyframe => {
                self.dropped.insert(pid);
            }
            _ => {}
        }
    }

    /// The file ended: what is held (from its last keyframe) goes out.
    pub(super) fn finish(self) -> Vec<TimedPacket> {
        self.cut.map(ResumeCut::finish).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(marker: u8) -> [u8; PACKET_LEN] {
        let mut packet = [0; PACKET_LEN];
        packet[0] = marker;
        packet
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_pes_is_sent_or_dropped_whole_even_when_its_packets_come_after_the_keyframe() {
        const VIDEO: u16 = 256;
        const AUDIO: u16 = 257;
        let mut cut = PacketCut::new(ms(100));
        let mut send = Vec::new();
        // (PID, the PES's start in ms and keyframe for a packet that begins one, marker)
        type Step = (u16, Option<(u64, bool)>, u8);
        const DATA: u16 = 300;
        let steps: &[Step] = &[
            (VIDEO, Some((0, true)), b'K'),
            (AUDIO, Some((70, false)), b'a'),
            // An audio PES of 85 ms begins before the keyframe of 80 ms is muxed.
            (AUDIO, Some((85, false)), b'x'),
            // The keyframe at 80 ms; the audio PES goes on after it, without its start.
            (VIDEO, Some((80, true)), b'L'),
            (AUDIO, None, b'y'),
            (DATA, None, b'S'),
            (VIDEO, None, b'l'),
            (AUDIO, Some((90, false)), b'c'),
            (VIDEO, Some((120, false)), b'm'),
            (AUDIO, None, b'd'),
            (AUDIO, Some((130, false)), b'e'),
        ];
        for &(pid, start, marker) in steps {
            let start = start.map(|(time, random_access)| (ms(time), random_access));
            cut.take(pid, start, packet(marker), &mut send);
        }
        send.extend(cut.finish());
        let sent: String = send.iter().map(|(_, packet)| packet[0] as char).collect();
        assert_eq!(
            sent, "SLlcmde",
            "untimed PIDs pass; no PES without its start"
        );
        assert_eq!(send[1].0, Some(ms(80)), "the keyframe's PES is marked");
        assert_eq!(send[2].0, None);
    }
}
