//! How the service's threads ask Linux for processor time: threads that serve requests ask
//! for short time slices, password hashing threads for a lower priority and long slices.
//!
//! Since Linux 6.12 a normal thread may ask for its own time slice (`sched_setattr`, with
//! `sched_runtime` as the slice), and a woken thread whose slice is shorter than that of the
//! thread running on its core takes the core at once instead of waiting for the rest of the
//! other's slice. So a request woken while a 15 ms hash runs is answered now. The slices
//! change who runs first, not how much each gets: hashing keeps its share of the cores (its
//! nice value), so it is never starved, as it would be under `SCHED_IDLE`
//! (`auth::hashing_threads` says why that matters). Measured in bench/RESULTS.md, scenario 3.
//! Earlier kernels accept and ignore the slice; elsewhere than Linux nothing is asked.

use std::time::Duration;

/// The shortest slice Linux grants: request threads run for moments and then wait again.
pub const REQUEST_SLICE: Duration = Duration::from_micros(100);

/// About one hash: a hash is rarely cut short by another hash, and any thread woken with the
/// usual slice (a request, the database, a client on the same machine) goes first.
pub const HASHING_SLICE: Duration = Duration::from_millis(20);

/// Asks for `REQUEST_SLICE` for the calling thread and every thread it starts afterwards,
/// since threads inherit it: call it before the async runtime starts its workers.
pub fn prefer_short_slices_for_requests() {
    if let Err(e) = sys::set_slice(None, REQUEST_SLICE) {
        tracing::info!(error = %e, "request threads keep the scheduler's usual time slices");
    }
}

/// Lowers the calling thread's priority by `nice_increment` and asks for `HASHING_SLICE`.
/// The priority matters most: when the slice cannot be set, the nice value is still lowered.
pub fn lower_for_hashing(nice_increment: i32) {
    let nice = (sys::nice() + nice_increment).min(19);
    if sys::set_slice(Some(nice), HASHING_SLICE).is_ok() {
        return;
    }
    if let Err(e) = sys::set_nice(nice) {
        tracing::warn!(error = %e, "cannot lower the priority of a password hashing thread");
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::time::Duration;

    /// The first version of the kernel's `struct sched_attr` (48 bytes), `sched_setattr(2)`.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        /// For a normal thread: the time slice it asks for, in nanoseconds.
        runtime: u64,
        deadline: u64,
        period: u64,
    }

    const _: () = assert!(size_of::<SchedAttr>() == 48);

    /// The calling thread's nice value (on Linux, `PRIO_PROCESS` with 0 is the thread).
    pub fn nice() -> i32 {
        // SAFETY: a plain system call about the calling thread. It cannot fail for itself,
        // so -1 is the nice value -1, not an error.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    pub fn set_nice(nice: i32) -> io::Result<()> {
        // SAFETY: a plain system call about the calling thread.
        match unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Sets the calling thread's time slice and nice value (`None`: keeps the current one).
    /// Only for a thread under `SCHED_OTHER` or `SCHED_BATCH` that passes its settings on to
    /// the threads it starts: a real-time or `SCHED_IDLE` policy, or reset-on-fork, was set
    /// on purpose by whoever started the process, and is left as it is.
    pub fn set_slice(new_nice: Option<i32>, slice: Duration) -> io::Result<()> {
        // SAFETY: a plain system call about the calling thread.
        let policy = unsafe { libc::sched_getscheduler(0) };
        if policy < 0 {
            return Err(io::Error::last_os_error());
        }
        if policy != libc::SCHED_OTHER && policy != libc::SCHED_BATCH {
            return Err(io::Error::other(
                "the scheduling policy was chosen for the process",
            ));
        }
        let attr = SchedAttr {
            size: size_of::<SchedAttr>() as u32,
            policy: policy as u32,
            flags: 0,
            nice: new_nice.unwrap_or_else(nice),
            priority: 0,
            runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            deadline: 0,
            period: 0,
        };
        // SAFETY: `attr` is a valid, initialised `struct sched_attr` of the size it declares,
        // read by the kernel during the call only; 0 names the calling thread.
        let result = unsafe {
            libc::syscall(
                libc::SYS_sched_setattr,
                0,
                &raw const attr,
                0 as libc::c_uint,
            )
        };
        match result {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

/// Elsewhere nothing is asked: every thread keeps the priority and slices of the process.
#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;
    use std::time::Duration;

    pub fn nice() -> i32 {
        0
    }

    pub fn set_nice(_: i32) -> io::Result<()> {
        Ok(())
    }

    pub fn set_slice(_: Option<i32>, _: Duration) -> io::Result<()> {
        Ok(())
    }
}

/// What the kernel says of the calling thread.
#[cfg(all(test, target_os = "linux"))]
pub(crate) struct ThreadScheduling {
    pub nice: i32,
    /// `None` before Linux 6.12, which does not honour slices asked for, or where the kernel
    /// does not report slices (`se.slice` in `/proc/thread-self/sched`).
    pub slice: Option<Duration>,
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) fn current_thread() -> ThreadScheduling {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let slice = (version >= (6, 12))
        .then(|| std::fs::read_to_string("/proc/thread-self/sched").ok())
        .flatten()
        .and_then(|sched| {
            sched.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                (name.trim() == "se.slice").then(|| value.trim().parse().ok())?
            })
        })
        .map(Duration::from_nanos);
    ThreadScheduling {
        nice: sys::nice(),
        slice,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn threads_started_after_asking_for_short_slices_have_them_at_the_same_priority() {
        let outer = std::thread::spawn(|| {
            let before = current_thread();
            // Any Linux since 3.14 takes the call (earlier than 6.12 ignores the slice), so
            // a wrong `sched_attr` fails here wherever the slice itself cannot be read back.
            sys::set_slice(None, REQUEST_SLICE).expect("sched_setattr");
            let inner = std::thread::spawn(current_thread).join().unwrap();
            (before, current_thread(), inner)
        });
        let (before, asked, inner) = outer.join().unwrap();
        assert_eq!(asked.nice, before.nice, "the priority is unchanged");
        assert_eq!(inner.nice, before.nice);
        match (asked.slice, inner.slice) {
            (Some(asked), Some(inner)) => {
                assert_eq!(asked, REQUEST_SLICE);
                assert_eq!(inner, REQUEST_SLICE, "a new thread inherits the slice");
            }
            _ => eprintln!("skipped the slices: this kernel does not report slices asked for"),
        }
    }
}
