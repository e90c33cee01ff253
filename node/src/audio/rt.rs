//! Realtime scheduling for the audio thread (`--realtime`, the default of `play` and `demo`).
//!
//! The audio thread asks for `SCHED_FIFO` at [`PRIORITY`] so that ordinary processes (a build, a
//! browser) cannot delay its callbacks. The thread itself only stores its kernel thread id when it
//! starts ([`current_thread_id`]: the null device at the start of its thread, a cpal stream in
//! its first data callback, one `gettid` and an atomic store). The **control thread** then
//! promotes it with `sched_setscheduler(tid, SCHED_FIFO)` ([`promote`]): on Linux that call takes
//! any thread of the process by id, so the system call, the error handling and the warning all
//! stay off the audio thread, and cpal's own thread, which the node does not create, is promoted
//! the same way as the null device's.
//!
//! When the system refuses (`EPERM`: no `CAP_SYS_NICE` and an `RLIMIT_RTPRIO` of 0, the default
//! for users outside an audio group), the node prints one warning saying how to allow it and plays
//! on at normal priority. With a non-zero `RLIMIT_RTPRIO` below [`PRIORITY`] it uses that limit.

/// The `SCHED_FIFO` priority asked for (1..=99): high enough to run ahead of every ordinary
/// thread, below the top priorities the kernel's own threads may use.
pub const PRIORITY: i32 = 70;

/// The warning printed when realtime scheduling is refused.
pub const DENIED_HELP: &str = "the audio thread runs at normal priority, so other programs can make it miss deadlines. \
     To allow realtime scheduling, raise the user's rtprio limit (e.g. `@audio - rtprio 95` in \
     /etc/security/limits.d/audio.conf, add the user to the `audio` group and log in again, or \
     run with `prlimit --rtprio=95`), or pass --no-realtime to silence this warning";

/// Why the audio thread could not be made realtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtError {
    /// Not permitted (`EPERM`): no `CAP_SYS_NICE` and the rtprio limit is 0.
    Denied,
    /// Any other failure, with the OS error.
    Failed(String),
    /// Not supported on this system.
    Unsupported,
}

impl std::fmt::Display for RtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RtError::Denied => write!(f, "realtime scheduling (SCHED_FIFO) is not permitted: {DENIED_HELP}"),
            RtError::Failed(e) => write!(f, "cannot set realtime scheduling (SCHED_FIFO) on the audio thread: {e}"),
            RtError::Unsupported => f.write_str("realtime scheduling is not supported on this system"),
        }
    }
}

/// The calling thread's kernel thread id (`gettid`; 0 where there is none).
///
/// Thread: any, including audio: one system call that neither blocks nor allocates.
pub fn current_thread_id() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Gives thread `tid` of this process `SCHED_FIFO` at [`PRIORITY`] (or at the rtprio limit when
/// that is lower and non-zero). Returns the priority set.
///
/// Thread: control.
pub fn promote(tid: i32) -> Result<i32, RtError> {
    #[cfg(target_os = "linux")]
    {
        let set = |priority: i32| {
            let param = libc::sched_param { sched_priority: priority };
            // SAFETY: `param` is a valid sched_param; `tid` is a thread id (a wrong one gives ESRCH).
            let r = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
            if r == 0 { Ok(priority) } else { Err(std::io::Error::last_os_error()) }
        };
        match set(PRIORITY) {
            Ok(p) => Ok(p),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => match rtprio_limit() {
                Some(limit) if limit > 0 && limit < PRIORITY as u64 => set(limit as i32).map_err(|e| {
                    if e.raw_os_error() == Some(libc::EPERM) { RtError::Denied } else { RtError::Failed(e.to_string()) }
                }),
                _ => Err(RtError::Denied),
            },
            Err(e) => Err(RtError::Failed(e.to_string())),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        Err(RtError::Unsupported)
    }
}

/// The scheduling policy and priority of thread `tid` of this process (`None` if it cannot be
/// read), e.g. `(libc::SCHED_FIFO, 70)`.
pub fn policy_of(tid: i32) -> Option<(i32, i32)> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain queries of a thread id.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        let mut param = libc::sched_param { sched_priority: 0 };
        let r = unsafe { libc::sched_getparam(tid, &mut param) };
        (policy >= 0 && r == 0).then_some((policy, param.sched_priority))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// Whether `policy` (from [`policy_of`]) is `SCHED_FIFO`.
pub fn is_fifo(policy: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        policy == libc::SCHED_FIFO
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = policy;
        false
    }
}

#[cfg(target_os = "linux")]
fn rtprio_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit to fill.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut lim) };
    (r == 0).then_some(lim.rlim_cur)
}

/// The control thread's side of `--realtime`: promotes each new audio thread once, as soon as its
/// id is known, and warns once if that is refused.
#[derive(Debug, Default)]
pub struct RealtimeRequest {
    enabled: bool,
    done_for: Option<i32>,
    warned: bool,
    /// Priority of the last promotion that succeeded.
    pub priority: Option<i32>,
}

impl RealtimeRequest {
    /// A request (`enabled` false: `--no-realtime`, nothing is done).
    pub fn new(enabled: bool) -> RealtimeRequest {
        RealtimeRequest { enabled, ..RealtimeRequest::default() }
    }

    /// Promotes the audio thread `tid` if it has not been yet. Returns a warning to print the
    /// first time promotion fails. Thread: control.
    pub fn poll(&mut self, tid: Option<i32>) -> Option<String> {
        let tid = tid.filter(|_| self.enabled)?;
        if self.done_for == Some(tid) {
            return None;
        }
        self.done_for = Some(tid);
        match promote(tid) {
            Ok(p) => {
                self.priority = Some(p);
                tracing::info!("audio thread {tid}: SCHED_FIFO priority {p}");
                None
            }
            Err(e) => {
                self.priority = None;
                (!std::mem::replace(&mut self.warned, true)).then(|| e.to_string())
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn promotion_sets_sched_fifo_or_reports_why_not() {
        // A thread of our own, promoted from this (control) thread by its id.
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(current_thread_id()).unwrap();
            let _ = stop_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert!(tid > 0);
        let before = policy_of(tid).unwrap();
        assert!(!is_fifo(before.0));
        let mut req = RealtimeRequest::new(true);
        let warning = req.poll(Some(tid));
        let after = policy_of(tid).unwrap();
        match req.priority {
            Some(p) => {
                assert_eq!(warning, None);
                assert!(is_fifo(after.0), "promoted but the policy is {after:?}");
                assert_eq!(after.1, p);
            }
            None => {
                // Without the permission (a test run as an ordinary user) it must say so, and
                // leave the thread as it was.
                let w = warning.expect("a refusal must produce a warning");
                assert!(w.contains("rtprio") && w.contains("--no-realtime"), "{w}");
                assert_eq!(after, before);
            }
        }
        // Once per thread.
        assert_eq!(req.poll(Some(tid)), None);
        stop_tx.send(()).unwrap();
        t.join().unwrap();
        // Disabled: nothing is done.
        assert_eq!(RealtimeRequest::new(false).poll(Some(tid)), None);
    }
}
