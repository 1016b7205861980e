//! The process limits the demo needs: one process holds every simulated user's sockets, the
//! proxy's both sides and the simulated servers' — a herd of 200 users is ~2000 open files,
//! past the 1024 many systems allow by default.
//!
//! Owns: raising the open-file soft limit up to the hard limit (which needs no privilege).
//! Must not touch: anything else about the process.

/// Open files the demo wants.
pub const WANTED_FILES: u64 = 8192;

/// Raise the soft open-file limit towards `wanted` (never past the hard limit, never down).
/// Returns the soft limit in force afterwards, when it could be read.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, but not on every unix
pub fn raise_open_files(wanted: u64) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass, which lives on our
    // stack for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let target = (wanted as libc::rlim_t).min(lim.rlim_max);
    if lim.rlim_cur >= target {
        return Some(lim.rlim_cur as u64);
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Some(lim.rlim_cur as u64);
    }
    Some(target as u64)
}

#[cfg(not(unix))]
pub fn raise_open_files(_wanted: u64) -> Option<u64> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_never_lowered() {
        let before = raise_open_files(0).expect("readable");
        assert_eq!(raise_open_files(1), Some(before));
        let after = raise_open_files(WANTED_FILES).expect("readable");
        assert!(after >= before);
    }
}
