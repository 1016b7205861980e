//! The process's open-file limit: every client connection, upstream connection and tunnel side
//! is a file descriptor, and a service manager's default soft limit (1,024 under systemd) is
//! far below what `max_connections` allows. Out of descriptors, `accept` fails and new
//! connections wait in the kernel's queue, and connects to the envs fail — the proxy's fault,
//! not the users' and not the envs'.
//!
//! Owns: reading the limit and raising the soft limit towards the hard one (which needs no
//! privilege); how many descriptors a given `max_connections` needs. Must not touch: anything
//! else about the process. Used by `cutover serve` (raised to the hard limit at start) and
//! `cutover demo`.

/// The soft and hard open-file limits of the process, when they can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
}

/// Descriptors `cutover serve` needs for `max_connections` client connections: each may carry
/// a request or a tunnel, so one upstream connection each, plus the listeners, the store, the
/// idle upstream connections of the pools and the runtime's own.
pub fn needed_for(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(256)
}

/// The current limits.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, but not on every unix
pub fn open_files() -> Option<OpenFiles> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives on our stack for the
    // duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some(OpenFiles {
        soft: lim.rlim_cur as u64,
        hard: lim.rlim_max as u64,
    })
}

#[cfg(not(unix))]
pub fn open_files() -> Option<OpenFiles> {
    None
}

/// Raise the soft open-file limit towards `wanted` (never past the hard limit, never down;
/// `u64::MAX` asks for the hard limit). Returns the limits in force afterwards, when they
/// could be read.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, but not on every unix
pub fn raise_open_files(wanted: u64) -> Option<OpenFiles> {
    let now = open_files()?;
    let target = wanted.min(now.hard);
    if now.soft >= target {
        return Some(now);
    }
    let raised = libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: now.hard as libc::rlim_t,
    };
    // SAFETY: setrlimit only reads the struct we pass, which lives on our stack for the
    // duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        // An unlimited hard limit (macOS) is refused as a soft one: stay where we are.
        return Some(now);
    }
    open_files()
}

#[cfg(not(unix))]
pub fn raise_open_files(_wanted: u64) -> Option<OpenFiles> {
    None
}

/// `cutover serve`'s start: raise the soft limit to the hard one, and warn (naming systemd's
/// `LimitNOFILE`) when even that is below what `max_connections` needs.
pub fn raise_for_serve(max_connections: usize) -> Option<OpenFiles> {
    let before = open_files();
    let after = raise_open_files(u64::MAX);
    let needed = needed_for(max_connections);
    match (before, after) {
        (Some(b), Some(a)) => {
            if a.soft > b.soft {
                tracing::info!(from = b.soft, to = a.soft, "raised the open-file limit");
            }
            if a.soft < needed {
                tracing::warn!(
                    limit = a.soft,
                    hard = a.hard,
                    needed,
                    max_connections,
                    "the open-file limit ({}) is below the {needed} that max_connections = \
                     {max_connections} needs: past it new connections wait and connects to \
                     the envs fail; raise the hard limit (systemd: LimitNOFILE={needed} or \
                     more; a shell: ulimit -Hn) or lower max_connections",
                    a.soft
                );
            }
        }
        _ => tracing::debug!("cannot read the open-file limit"),
    }
    after
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_never_lowered() {
        let before = raise_open_files(0).expect("readable");
        assert_eq!(raise_open_files(1), Some(before));
        let after = raise_open_files(8192).expect("readable");
        assert!(after.soft >= before.soft);
        assert_eq!(after.hard, before.hard);
    }

    #[test]
    fn a_tunnel_needs_two_descriptors() {
        assert_eq!(needed_for(10_000), 20_256);
        assert_eq!(needed_for(usize::MAX), u64::MAX);
    }
}
