//! The audit consumer is background work: its threads run at a lower scheduling priority, so
//! that on a saturated host the CPU goes to answering senders first (their timeouts are
//! seconds; an audit row a second late costs nothing). Idle CPU still goes to it in full.

/// Lowers the calling thread's priority to nice value `nice` (0 leaves it as it is).
pub(super) fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its arguments. On Linux the nice value is per thread,
        // and `who = 0` names the calling thread. Raising the value needs no privilege.
        let done = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, nice) };
        if done != 0 {
            log::debug!(
                "audit: the thread's priority was not lowered: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The calling thread's nice value (tests).
#[cfg(all(test, target_os = "linux"))]
fn current() -> i32 {
    // SAFETY: getpriority only reads its arguments.
    unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = current();
        // 19, the lowest priority: always allowed, whatever the process's own nice value.
        let lowered = std::thread::spawn(|| {
            lower_priority(19);
            current()
        })
        .join()
        .expect("the thread");
        assert_eq!(lowered, 19);
        assert_eq!(current(), before, "this thread keeps its priority");
    }
}
