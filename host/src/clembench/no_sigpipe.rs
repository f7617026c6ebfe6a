//! Writing to a worker that has gone away must be an error, not a death.
//!
//! `main` restores SIGPIPE's default action so that `clemhost ... | head`
//! ends quietly. With that action, a write to a worker's stdin after the
//! worker died (killed on Ctrl-C, or crashed) would kill the whole host
//! with SIGPIPE: no summary, no exit code, run folder left to `--resume`.
//! [`Guard`] blocks SIGPIPE in the calling thread while it talks to a
//! worker: a signal raised by a write is directed at the writing thread, so
//! with it blocked the write returns `EPIPE` instead. On drop the guard
//! takes any SIGPIPE left pending for the thread and restores the mask.

/// Blocks SIGPIPE for the current thread until dropped.
pub struct Guard {
    #[cfg(unix)]
    old: libc::sigset_t,
}

impl Guard {
    /// Blocks SIGPIPE in the current thread.
    pub fn new() -> Guard {
        #[cfg(unix)]
        {
            // SAFETY: the sets are initialised by sigemptyset before use and
            // pthread_sigmask only changes the calling thread's mask.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGPIPE);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
                Guard { old }
            }
        }
        #[cfg(not(unix))]
        Guard {}
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: as in `new`; sigtimedwait with a zero timeout only takes a
        // SIGPIPE that is already pending for this thread, never waits.
        unsafe {
            if libc::sigismember(&self.old, libc::SIGPIPE) == 1 {
                return; // blocked before us: leave it as it was
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// A write to a child that has exited fails with `BrokenPipe` under the
    /// guard, even with SIGPIPE's default action (which would end the test
    /// process), and the thread goes on after the guard is dropped.
    #[test]
    fn a_write_to_a_dead_child_is_an_error_not_a_signal() {
        let handler = std::thread::spawn(|| {
            // SAFETY: sets SIGPIPE's action for the test process; the guard
            // under test is what keeps it from firing.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let mut child = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
            let mut input = child.stdin.take().unwrap();
            child.wait().unwrap();
            let guard = Guard::new();
            let mut broke = false;
            for _ in 0..100 {
                if let Err(e) = input.write_all(&[b'x'; 65536]) {
                    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
                    broke = true;
                    break;
                }
            }
            drop(guard);
            // SAFETY: back to what Rust's runtime sets for tests.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            broke
        });
        assert!(handler.join().unwrap(), "the pipe reported it was closed");
    }
}
