//! Starts child processes so that they die with streampub, whichever thread asks.
//!
//! `PR_SET_PDEATHSIG` kills a child when the *thread* that forked it exits, not when the
//! process does. A program embedding streampub may build a sink on a thread that then ends
//! (a blocking-pool thread, a helper thread), which would kill a healthy ffmpeg. So every child
//! is forked by one thread that is never joined and lives as long as the process: the signal
//! then fires only when the process itself dies, even by `SIGKILL`.

use std::io;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use streampub_core::plugin::die_with_parent;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// A command to start, with the runtime its child is registered with, and where to answer.
struct Request {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Starts `command` with `PR_SET_PDEATHSIG = SIGKILL`, from the thread that lives as long as
/// the process.
pub(crate) async fn spawn(mut command: Command) -> io::Result<Child> {
    // SAFETY: `die_with_parent` only makes async-signal-safe calls in the child.
    unsafe {
        command.pre_exec(die_with_parent());
    }
    let (reply, answer) = oneshot::channel();
    let request = Request {
        command,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    spawner()
        .lock()
        .expect("spawner lock")
        .send(request)
        .map_err(|_| io::Error::other("the process-starting thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the process-starting thread is gone"))?
}

/// The sender to the spawning thread, which is started on first use.
fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (sender, requests) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("streampub-spawner".into())
            .spawn(move || {
                // The sender is in a static and never dropped: this loop ends with the process.
                for mut request in requests {
                    let _runtime = request.runtime.enter();
                    let _ = request.reply.send(request.command.spawn());
                }
            })
            .expect("start the process-starting thread");
        Mutex::new(sender)
    })
}
