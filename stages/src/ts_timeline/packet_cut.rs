//! A file sent again from inside ([`streampub_core::Stage::resume_fragment`]), cut packet by
//! packet: the elementary streams' packets go through a [`ResumeCut`] whose units are PES
//! packets, each packet with the decode time of the PES it belongs to, so a PES is sent or
//! dropped whole. Tables (PAT, PMT) and other packets always pass.
//!
//! The streams' packets interleave, so a PES that began before the keyframe may still have
//! packets after it: until its PID begins its next PES, those are dropped too.

use std::collections::HashMap;
use std::time::Duration;

use crate::mpegts::PACKET_LEN;
use crate::resume_cut::ResumeCut;

/// A packet to send, with its PES's decode time when it begins one (marked for pacing).
pub(super) type TimedPacket = (Option<Duration>, [u8; PACKET_LEN]);

#[derive(Debug)]
pub(super) struct PacketCut {
    /// `None` once the keyframe to resume at is known and passed.
    cut: Option<ResumeCut<TimedPacket>>,
    /// Per PID, the decode time of the PES being read.
    pes_times: HashMap<u16, Duration>,
    /// The keyframe's time, once the cut is done: packets of an earlier PES are dropped.
    resumed_at: Option<Duration>,
}

impl PacketCut {
    pub(super) fn new(offset: Duration) -> Self {
        Self {
            cut: Some(ResumeCut::new(offset)),
            pes_times: HashMap::new(),
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
                time
            }
            // The rest of a PES that began before the file did: nothing to attach it to.
            None => match self.pes_times.get(&pid) {
                Some(time) => *time,
                None => return,
            },
        };
        let unit = (pes_start.map(|(time, _)| time), packet);
        match &mut self.cut {
            Some(cut) => {
                let random_access = pes_start.is_some_and(|(_, random_access)| random_access);
                if cut.take(time, random_access, unit, send) {
                    self.resumed_at = Some(cut.keyframe_time().unwrap_or(time));
                    self.cut = None;
                }
            }
            None if self.resumed_at.is_some_and(|keyframe| time < keyframe) => {}
            None => send.push(unit),
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
        let steps: &[Step] = &[
            (VIDEO, Some((0, true)), b'K'),
            (AUDIO, Some((70, false)), b'a'),
            // The keyframe at 80 ms; the audio PES of 70 ms goes on after it.
            (VIDEO, Some((80, true)), b'L'),
            (AUDIO, None, b'b'),
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
        assert_eq!(sent, "Llcmde");
        assert_eq!(send[0].0, Some(ms(80)), "the keyframe's PES is marked");
        assert_eq!(send[1].0, None);
    }
}
