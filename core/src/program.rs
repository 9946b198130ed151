//! Finding external programs (ffmpeg) the way a shell would, and tying a child's life to
//! streampub's.

use std::io;
use std::path::{Path, PathBuf};

/// A path with a `/` as is, else the first executable of that name on `PATH`.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(program))
        .find(|candidate| executable(candidate))
}

/// What a child runs before exec so that it gets `SIGKILL` when the thread that forked it ends
/// (`PR_SET_PDEATHSIG`), also when streampub is killed: pass it to `pre_exec`, from a thread
/// that lives as long as the child should.
///
/// The closure runs in the forked child, where only async-signal-safe calls are allowed:
/// prctl and getppid are, and it touches no memory of the parent.
pub fn die_with_parent() -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let parent = rustix::process::getpid();
    move || {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        // The parent may have died between the fork and the prctl: then no signal comes.
        if rustix::process::getppid() != Some(parent) {
            return Err(io::Error::other(
                "streampub exited while starting the process",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_or_by_path() {
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("/bin/sh")).is_some());
        assert!(find_program(Path::new("streampub-no-such-program")).is_none());
    }
}
