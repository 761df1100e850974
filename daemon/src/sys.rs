//! The few POSIX calls std does not wrap. Each is a one-line FFI call with a SAFETY note; nothing
//! else in the crate uses `unsafe`.

use std::io;
use std::process::Command;

/// The real user id of this process.
#[allow(unsafe_code)]
pub fn uid() -> u32 {
    // SAFETY: getuid takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::getuid() }
}

/// Sets this process's umask to 0077: every file it creates (the database, its WAL and
/// shared-memory files, logs) is private to the user, whatever the caller's umask.
#[allow(unsafe_code)]
pub fn private_umask() {
    // SAFETY: umask takes an integer, cannot fail and touches no memory of ours.
    unsafe {
        libc::umask(0o077);
    }
}

/// Sends `SIGTERM` to `pid`.
#[allow(unsafe_code)]
pub fn terminate(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad pid {pid}")))?;
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad pid {pid}"),
        ));
    }
    // SAFETY: kill takes two integers and touches no memory of ours; pid > 0 names one process
    // (never a process group or "every process").
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the child started by `cmd` the leader of a new session (no controlling terminal, its own
/// process group), so it outlives the process that started it and signals sent to that process's
/// group (a browser closing its native host, Ctrl-C in a terminal) do not reach it.
#[allow(unsafe_code)]
pub fn detach_on_spawn(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it only calls setsid, which is
    // async-signal-safe, allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes fd 1 for frames only: returns a private duplicate of it (close-on-exec) and points fd 1
/// at stderr, so a stray print anywhere in the process (ours, a dependency's) lands in the log
/// stream instead of corrupting the browser port. Children started later never see the port.
#[allow(unsafe_code)]
pub fn take_stdout_for_frames() -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    let frames = io::stdout().as_fd().try_clone_to_owned()?;
    // SAFETY: dup2 takes two integers; fds 1 and 2 are the process's standard streams, and
    // replacing fd 1 does not invalidate any Rust-owned descriptor (we hold a duplicate).
    let rc = unsafe { libc::dup2(2, 1) };
    if rc == -1 {
        // stderr is closed: point fd 1 at /dev/null instead
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        use std::os::fd::AsRawFd;
        // SAFETY: as above; `null` stays open for the duration of the call.
        if unsafe { libc::dup2(null.as_raw_fd(), 1) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(std::fs::File::from(frames))
}

/// Puts `f`'s open file description in non-blocking mode.
pub fn set_nonblocking(f: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    set_flag(f.as_raw_fd(), true)
}

/// Puts `f`'s open file description back in blocking mode.
pub fn set_blocking(f: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    set_flag(f.as_raw_fd(), false)
}

#[allow(unsafe_code)]
fn set_flag(fd: std::os::fd::RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd we hold open, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags == -1 {
        return Err(io::Error::last_os_error());
    }
    let new = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if new != flags && unsafe { libc::fcntl(fd, libc::F_SETFL, new) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The uid of the process at the other end of a connected Unix socket.
#[allow(unsafe_code)]
pub fn peer_uid(fd: &impl std::os::fd::AsRawFd) -> io::Result<u32> {
    let fd = fd.as_raw_fd();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are live locals of the sizes passed; the kernel writes at
        // most `len` bytes into `cred`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(cred.uid)
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (mut uid, mut gid): (libc::uid_t, libc::gid_t) = (0, 0);
        // SAFETY: getpeereid writes two integers into live locals.
        let rc = unsafe { libc::getpeereid(fd, &mut uid, &mut gid) };
        if rc == 0 {
            Ok(uid)
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_uid_of_a_socket_pair_is_ours() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), uid());
    }

    #[test]
    fn refuses_pid_zero() {
        assert!(terminate(0).is_err());
        assert!(terminate(u32::MAX).is_err());
    }
}
