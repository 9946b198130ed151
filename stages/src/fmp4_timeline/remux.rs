//! `remux: ffmpeg`: converts a non-fragmented MP4 (sample tables in `moov`) into fragmented MP4
//! with an ffmpeg child process (`-c copy`, reading the file), before the timeline reads it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use async_trait::async_trait;
use tracing::info;

use streampub_core::plugin::BodyPreparer;
use streampub_core::plugin::{Fragment, FragmentBody};

use crate::formats::mp4::{BoxHeader, FourCc};

/// How ffmpeg writes the converted file: what the timeline stage reads best.
const FRAGMENTED_MOVFLAGS: &str = "+frag_keyframe+empty_moov+default_base_moof";

/// Converts non-fragmented MP4 files with ffmpeg.
pub(crate) struct FfmpegRemux {
    pub(crate) ffmpeg: PathBuf,
}

#[async_trait]
impl BodyPreparer for FfmpegRemux {
    async fn prepare(&self, fragment: &mut Fragment) -> Result<(), String> {
        // Only files can be handed to ffmpeg; other bodies go to the stage as they are.
        let FragmentBody::File(path) = &fragment.body else {
            return Ok(());
        };
        let source = path.clone();
        let inspected = source.clone();
        let fragmented = tokio::task::spawn_blocking(move || is_fragmented(&inspected))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("cannot inspect {}: {error}", source.display()))?;
        if fragmented != Some(false) {
            return Ok(());
        }
        let started = Instant::now();
        let target = tempfile::Builder::new()
            .prefix(".streampub-remux-")
            .suffix(".mp4")
            .tempfile()
            .map_err(|error| format!("cannot create a temporary file for the remux: {error}"))?
            .into_temp_path();
        let output = tokio::process::Command::new(&self.ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
            .arg(&source)
            .args([
                "-map",
                "0",
                "-c",
                "copy",
                "-movflags",
                FRAGMENTED_MOVFLAGS,
                "-f",
                "mp4",
            ])
            .arg(&*target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|error| format!("cannot run {}: {error}", self.ffmpeg.display()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "ffmpeg could not remux {} into fragmented MP4: {}",
                source.display(),
                stderr.trim()
            ));
        }
        info!(
            event = "fragment_remuxed",
            fragment = %fragment.info.name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Remuxed {} into fragmented MP4 in {} ms",
            fragment.info.name,
            started.elapsed().as_millis()
        );
        fragment.info.length = std::fs::metadata(&target)
            .ok()
            .map(|metadata| metadata.len());
        fragment.body = FragmentBody::Temporary(target);
        Ok(())
    }
}

/// Whether an MP4 file is fragmented (its `moov` has an `mvex`); `None` when it has no `moov`
/// (not MP4, or cut short: the stage will say what is wrong).
fn is_fragmented(path: &Path) -> io::Result<Option<bool>> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    let Some((moov_start, moov_end)) = find_box(&mut file, 0, length, FourCc::MOOV)? else {
        return Ok(None);
    };
    Ok(Some(
        find_box(&mut file, moov_start, moov_end, FourCc(*b"mvex"))?.is_some(),
    ))
}

/// The payload range of the first box of type `kind` among the boxes in `start..end`, reading
/// only headers. Sizes come from the file, so every step is checked: a size that would run
/// past `end` or overflow ends the walk.
fn find_box(file: &mut File, start: u64, end: u64, kind: FourCc) -> io::Result<Option<(u64, u64)>> {
    let mut position = start;
    while position
        .checked_add(8)
        .is_some_and(|header_end| header_end <= end)
    {
        file.seek(SeekFrom::Start(position))?;
        let mut header = [0u8; 16];
        let available = (end - position).min(16) as usize;
        file.read_exact(&mut header[..available])?;
        if available < BoxHeader::needed(&header) {
            return Ok(None);
        }
        let Ok(parsed) = BoxHeader::parse(&header) else {
            return Ok(None);
        };
        let size = parsed.size.unwrap_or(end - position);
        let Some(box_end) = position.checked_add(size).filter(|box_end| *box_end <= end) else {
            return Ok(None);
        };
        if parsed.kind == kind {
            return Ok(Some((position + parsed.header_len as u64, box_end)));
        }
        position = box_end;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const SAMPLE: &[u8] = include_bytes!("../../../examples/fragments/batch-0.mp4");

    fn inspect(bytes: &[u8]) -> io::Result<Option<bool>> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        is_fragmented(file.path())
    }

    #[test]
    fn sizes_that_overflow_or_run_past_the_file_end_the_walk() {
        // A box claiming 2^64 - 8 bytes (64-bit size) before the moov.
        let mut huge = vec![0, 0, 0, 1];
        huge.extend_from_slice(b"free");
        huge.extend_from_slice(&(u64::MAX - 7).to_be_bytes());
        huge.extend_from_slice(SAMPLE);
        assert_eq!(inspect(&huge).unwrap(), None);
        assert_eq!(inspect(SAMPLE).unwrap(), Some(true));
    }

    #[test]
    fn random_and_damaged_files_never_hang_or_panic() {
        let mut state = 0x5eed_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        for _ in 0..300 {
            let mut bytes = SAMPLE.to_vec();
            // Overwrite a few bytes (often inside box headers) and cut the file somewhere.
            for _ in 0..1 + next() % 8 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            bytes.truncate((next() as usize) % (bytes.len() + 1));
            let _ = inspect(&bytes);
            let noise: Vec<u8> = (0..next() % 4096).map(|_| next() as u8).collect();
            let _ = inspect(&noise);
        }
    }
}
