//! Test media: generated with `scripts/make-fragments`, cached under `target/test-media`, and
//! measured with ffprobe.

use std::path::PathBuf;
use std::process::Command;

use crate::workspace_root;

/// `count` small fragments of `seconds` each (320x180, 25 fps), with `extra` options of
/// `scripts/make-fragments` (see [`fragments`]).
pub fn small_fragments(count: u32, seconds: u32, extra: &[&str]) -> Vec<PathBuf> {
    let (count, seconds) = (count.to_string(), seconds.to_string());
    let mut args = vec![
        "--count",
        &count,
        "--seconds",
        &seconds,
        "--size",
        "320x180",
        "--fps",
        "25",
    ];
    args.extend_from_slice(extra);
    fragments(&args)
}

/// Fragments as `scripts/make-fragments` makes them; `args` are its options without `--out`.
/// Generated once per set of options and kept in `target/test-media`.
pub fn fragments(args: &[&str]) -> Vec<PathBuf> {
    let key: String = args
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cache = workspace_root().join("target/test-media").join(&key);
    // One generation at a time in this process; other processes are kept apart by the rename.
    static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _generating = GENERATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !cache.join(".complete").exists() {
        // Generated beside the cache and renamed, so parallel tests never see half a set.
        let staging = workspace_root()
            .join("target/test-media")
            .join(format!(".{key}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let status = Command::new(workspace_root().join("scripts/make-fragments"))
            .arg("--out")
            .arg(&staging)
            .args(args)
            .status()
            .expect("run scripts/make-fragments");
        assert!(status.success(), "scripts/make-fragments {args:?} failed");
        std::fs::write(staging.join(".complete"), b"").unwrap();
        if std::fs::rename(&staging, &cache).is_err() {
            // Another test made the same set first.
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.is_file() && !path.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .collect();
    files.sort_by_key(|path| {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let digits: String = name
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .chars()
            .rev()
            .collect::<String>()
            .parse::<u64>()
            .unwrap_or(0)
    });
    files
}

/// One stream's packets, as ffprobe reads them.
#[derive(Debug, Default, Clone)]
pub struct StreamPackets {
    /// Decoding timestamps in seconds, in file order.
    pub dts: Vec<f64>,
    /// Packet durations in seconds.
    pub durations: Vec<f64>,
    /// Whether each packet is a keyframe.
    pub keyframes: Vec<bool>,
}

impl StreamPackets {
    /// From the first packet's DTS to the end of the last packet.
    pub fn span(&self) -> f64 {
        match (self.dts.first(), self.dts.last(), self.durations.last()) {
            (Some(first), Some(last), Some(duration)) => last + duration - first,
            _ => 0.0,
        }
    }

    pub fn count(&self) -> usize {
        self.dts.len()
    }

    /// Whether DTS never goes back (`strict`: always goes forward).
    pub fn monotonic(&self, strict: bool) -> bool {
        self.dts.windows(2).all(|pair| {
            if strict {
                pair[1] > pair[0]
            } else {
                pair[1] >= pair[0]
            }
        })
    }
}

/// The video and audio packets of a media file.
#[derive(Debug, Default, Clone)]
pub struct Packets {
    pub video: StreamPackets,
    pub audio: StreamPackets,
}

impl Packets {
    /// The longer of the two streams' spans.
    pub fn duration(&self) -> f64 {
        self.video.span().max(self.audio.span())
    }
}

/// The summed durations of media files (recordings of one stream, or its input fragments).
pub fn total_duration(paths: &[PathBuf]) -> f64 {
    paths
        .iter()
        .map(|path| probe_packets(path).duration())
        .sum()
}

/// Reads every packet of `path` with ffprobe.
pub fn probe_packets(path: &std::path::Path) -> Packets {
    probe(path, &[])
}

/// Every packet of `path`, also those an MP4 edit list hides (an AAC encoder's priming), which
/// a joined stream keeps.
pub fn probe_all_packets(path: &std::path::Path) -> Packets {
    probe(path, &["-ignore_editlist", "1"])
}

fn probe(path: &std::path::Path, options: &[&str]) -> Packets {
    let output = Command::new("ffprobe")
        .args(options)
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,dts_time,duration_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe not found; run scripts/test, which installs ffmpeg");
    assert!(
        output.status.success(),
        "ffprobe {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut packets = Packets::default();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 4 {
            continue;
        }
        let stream = match fields[0] {
            "video" => &mut packets.video,
            "audio" => &mut packets.audio,
            _ => continue,
        };
        let Ok(dts) = fields[1].parse::<f64>() else {
            continue;
        };
        // An MP4's first AAC packet often has none ("N/A"); it is a packet all the same.
        let duration = fields[2].parse::<f64>().unwrap_or(0.0);
        stream.dts.push(dts);
        stream.durations.push(duration);
        stream.keyframes.push(fields[3].starts_with('K'));
    }
    packets
}

/// The duration of `path` as its container states it (ffprobe's `format=duration`), in seconds.
pub fn container_duration(path: &std::path::Path) -> f64 {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe not found; run scripts/test, which installs ffmpeg");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe gives {} no duration", path.display()))
}

/// The duration of the media file `path` as its tracks hold it, in seconds: for MP4 the
/// longest track's summed sample durations (ffprobe's `stream=duration` with edit lists
/// ignored), which unlike packet spans does not guess the duration of a last audio packet
/// shorter than the others, and like the timeline stage counts the samples an edit list hides
/// (an AAC encoder's priming); for other containers (FLV, MPEG-TS), whose stream durations
/// ffprobe only estimates, the packets' span.
pub fn track_duration(path: &std::path::Path) -> f64 {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-ignore_editlist", "1"])
        .args([
            "-show_entries",
            "stream=duration:format=format_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe not found; run scripts/test, which installs ffmpeg");
    let text = String::from_utf8_lossy(&output.stdout);
    if !text.contains("mp4") {
        return probe_packets(path).duration();
    }
    text.lines()
        .filter_map(|line| line.trim().parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// The fragments of `fragments(args)` remuxed by GStreamer's `mp4mux` (1 s fragments, written
/// as it streams them: to a pipe, so with no index rewritten at the end), cached like them.
/// Needs `gst-launch-1.0` and `gstreamer1.0-plugins-good` (scripts/test installs them).
pub fn gstreamer_fragments(args: &[&str]) -> Vec<PathBuf> {
    made_by_gstreamer(&fragments(args), "mp4mux", |source| {
        format!(
            "filesrc location='{}' ! qtdemux name=demux \
             demux.video_0 ! queue ! mux.video_0 demux.audio_0 ! queue ! mux.audio_0",
            source.display()
        )
    })
}

/// Fragments like [`gstreamer_fragments`] whose video GStreamer encodes itself, with x264enc and
/// two B-frames (a 1 s GOP, 25 fps, 320x180; `fragments(args)`' audio). Needs
/// `gstreamer1.0-plugins-ugly` too (scripts/test installs it).
pub fn gstreamer_b_frame_fragments(args: &[&str]) -> Vec<PathBuf> {
    let sources = fragments(args);
    made_by_gstreamer(&sources, "x264enc", |source| {
        let frames = probe_packets(source).video.count();
        format!(
            "videotestsrc num-buffers={frames} pattern=ball \
             ! video/x-raw,width=320,height=180,framerate=25/1 \
             ! x264enc bframes=2 key-int-max=25 bitrate=400 speed-preset=veryfast \
             ! video/x-h264,stream-format=avc,alignment=au ! queue ! mux.video_0 \
             filesrc location='{}' ! qtdemux name=demux demux.audio_0 ! queue ! mux.audio_0",
            source.display()
        )
    })
}

/// `sources` each made anew by the GStreamer pipeline `elements(source)` into `mp4mux` (1 s
/// fragments, to a pipe), cached beside them under the extension `kind`.
fn made_by_gstreamer(
    sources: &[PathBuf],
    kind: &str,
    elements: impl Fn(&std::path::Path) -> String,
) -> Vec<PathBuf> {
    let cache = sources[0].parent().unwrap().with_extension(kind);
    if !cache.join(".complete").exists() {
        let staging = cache.with_extension(format!("{kind}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).unwrap();
        for source in sources {
            let target = staging.join(source.file_name().unwrap());
            let pipeline = format!(
                "gst-launch-1.0 -q -e {} mp4mux name=mux fragment-duration=1000 streamable=true \
                 ! fdsink fd=1 > '{}'",
                elements(source),
                target.display()
            );
            let status = Command::new("sh")
                .args(["-c", &pipeline])
                .status()
                .expect("sh");
            assert!(
                status.success(),
                "gst-launch-1.0 failed on {}; run scripts/test, which installs gstreamer1.0-tools \
                 and gstreamer1.0-plugins-good and -ugly",
                source.display()
            );
        }
        std::fs::write(staging.join(".complete"), b"").unwrap();
        if std::fs::rename(&staging, &cache).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    sources
        .iter()
        .map(|source| cache.join(source.file_name().unwrap()))
        .collect()
}

/// The channel count of the first audio stream of `path`, as ffprobe reads it.
pub fn audio_channels(path: &std::path::Path) -> Option<u32> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=channels",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe not found; run scripts/test, which installs ffmpeg");
    // MPEG-TS lists the stream again under its program.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.trim().parse().ok())
}

/// How many errors ffmpeg reports when it decodes every frame of `path`.
pub fn decoder_errors(path: &std::path::Path) -> usize {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg not found; run scripts/test, which installs ffmpeg");
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count()
}

/// How `segment_set` cuts a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packager {
    /// ffmpeg's `hls` muxer with fMP4 segments: `init.mp4`, `seg0.m4s`, `seg1.m4s`, …, and
    /// `stream.m3u8`.
    HlsFmp4,
    /// ffmpeg's `dash` muxer, video only (it puts each stream in its own representation):
    /// `init-stream0.m4s`, `chunk-stream0-00001.m4s`, …, and `manifest.mpd`.
    Dash,
}

/// `source` cut into 4 s segments by `packager`, cached under `target/test-media`; returns the
/// directory holding the segments, their init segment and the playlist, as the packager
/// names them.
pub fn segment_set(source: &std::path::Path, packager: Packager) -> PathBuf {
    // Beside the source's set, not in it: that set lists its directory.
    let set = source.parent().expect("a cached set");
    let cache = set.with_extension(match packager {
        Packager::HlsFmp4 => "hls",
        Packager::Dash => "dash",
    });
    if cache.join(".complete").exists() {
        return cache;
    }
    let staging = cache.with_extension(format!("staging.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap();
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-nostdin", "-i"]).arg(source);
    match packager {
        Packager::HlsFmp4 => command
            .args(["-map", "0", "-c", "copy", "-f", "hls", "-hls_time", "4"])
            .args(["-hls_playlist_type", "vod", "-hls_segment_type", "fmp4"])
            .arg("-hls_segment_filename")
            .arg(staging.join("seg%d.m4s"))
            .arg(staging.join("stream.m3u8")),
        Packager::Dash => command
            .args([
                "-map",
                "0:v",
                "-c",
                "copy",
                "-f",
                "dash",
                "-seg_duration",
                "4",
            ])
            .args(["-use_template", "1", "-use_timeline", "0"])
            .arg(staging.join("manifest.mpd")),
    };
    let status = command
        .status()
        .expect("ffmpeg not found; run scripts/test");
    assert!(
        status.success(),
        "ffmpeg could not cut {}",
        source.display()
    );
    std::fs::write(staging.join(".complete"), b"").unwrap();
    if std::fs::rename(&staging, &cache).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    cache
}

/// The MD5 of each video packet of `path`, in decode order (ffmpeg's `framemd5`, the packets
/// copied as they are): the same frames in another container (an MP4 batch, the FLV a server
/// recorded) have the same hashes, so a recording can be matched frame by frame to its input.
pub fn video_packet_hashes(path: &std::path::Path) -> Vec<String> {
    frame_md5(path, &["-c", "copy"])
}

/// The MD5 of each decoded video frame of `path`, in order: the same pictures whatever the
/// container and however the packets were rewrapped (MPEG-TS carries H.264 as Annex B, FLV as
/// AVCC), so a recording can be matched frame by frame to batches of another container.
pub fn video_frame_hashes(path: &std::path::Path) -> Vec<String> {
    frame_md5(path, &[])
}

/// The hashes ffmpeg's `framemd5` prints for the video of `path`, with `options` for the
/// output (e.g. `-c copy`: the packets, not the pictures).
fn frame_md5(path: &std::path::Path, options: &[&str]) -> Vec<String> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", "0:v"])
        .args(options)
        .args(["-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg not found; run scripts/test, which installs ffmpeg");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit(',').next())
        .map(|hash| hash.trim().to_owned())
        .collect()
}

/// Asserts that `recording` (an archive) holds every packet of `media` once, in order (video
/// DTS strictly increasing), and decodes cleanly.
pub fn assert_every_packet_once(recording: &std::path::Path, media: &[PathBuf], context: &str) {
    let input: Vec<Packets> = media.iter().map(|path| probe_all_packets(path)).collect();
    let recorded = probe_all_packets(recording);
    let video: usize = input.iter().map(|packets| packets.video.count()).sum();
    let audio: usize = input.iter().map(|packets| packets.audio.count()).sum();
    assert_eq!(recorded.video.count(), video, "{context}: video packets");
    assert_eq!(recorded.audio.count(), audio, "{context}: audio packets");
    assert!(
        recorded.video.monotonic(true),
        "{context}: video DTS increase"
    );
    assert_eq!(decoder_errors(recording), 0, "{context}: decoding errors");
}
