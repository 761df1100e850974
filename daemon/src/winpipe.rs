//! The Windows transport between the native host (or the CLI) and the daemon: a named pipe that
//! only the user can open and that nobody else can squat. Compiled on Windows only; the design
//! is in docs/protocol.md ("Windows").
//!
//! - Name: `\\.\pipe\quiver-<user SID>`: one daemon per user, found without a file system path.
//!   Pipe names are global and not secret, so the name alone protects nothing:
//! - The daemon creates the pipe with a security descriptor whose owner is the user and whose
//!   protected DACL grants access to the user's SID only (`O:<sid>D:P(A;;GA;;;<sid>)`), with
//!   `PIPE_REJECT_REMOTE_CLIENTS` (no SMB clients), and the first instance with
//!   `FILE_FLAG_FIRST_PIPE_INSTANCE`: if any pipe of that name exists — a second daemon, or
//!   another user who created it first to impersonate the daemon (KeePassXC #9393) — creation
//!   fails and the daemon says so instead of serving next to it.
//! - The client opens the pipe and checks that the pipe's owner is its own SID before it sends
//!   a byte: a squatter's pipe is owned by the squatter.
//! - Frames are the same as on the Unix socket (4-byte little-endian length, JSON).

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::ptr;
use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, PipeMode, ServerOptions,
};
use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, ERROR_ACCESS_DENIED, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo,
    SDDL_REVISION_1, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    EqualSid, GetTokenInformation, TokenUser, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    PSID, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// The pipe of the user with SID `sid` (`S-1-5-21-...`).
pub fn pipe_name(sid: &str) -> String {
    format!(r"\\.\pipe\quiver-{sid}")
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Frees memory Windows allocated with `LocalAlloc` when dropped.
struct Local(*mut c_void);

impl Drop for Local {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from an API documented to allocate with LocalAlloc and is
            // freed once.
            unsafe { LocalFree(self.0) };
        }
    }
}

/// The SID of the user running this process, as a buffer holding a `TOKEN_USER`.
struct UserSid {
    buf: Vec<u64>,
}

impl UserSid {
    fn current() -> io::Result<UserSid> {
        let mut token: HANDLE = ptr::null_mut();
        // SAFETY: GetCurrentProcess returns a pseudo handle; `token` receives a handle we close.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut len = 0u32;
        // SAFETY: a size query (null buffer, 0 length) only writes `len`.
        unsafe { GetTokenInformation(token, TokenUser, ptr::null_mut(), 0, &mut len) };
        // u64 elements keep the TOKEN_USER (pointer first) aligned
        let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
        // SAFETY: `buf` holds at least `len` bytes.
        let ok = unsafe {
            GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len)
        };
        let err = io::Error::last_os_error();
        // SAFETY: `token` is a handle we own.
        unsafe { CloseHandle(token) };
        if ok == 0 {
            return Err(err);
        }
        Ok(UserSid { buf })
    }

    fn psid(&self) -> PSID {
        // SAFETY: `buf` was filled by GetTokenInformation(TokenUser), so it starts with a
        // TOKEN_USER whose SID points into `buf` itself.
        unsafe { (*(self.buf.as_ptr() as *const TOKEN_USER)).User.Sid }
    }

    fn to_string_sid(&self) -> io::Result<String> {
        let mut s: *mut u16 = ptr::null_mut();
        // SAFETY: `psid` is a valid SID; `s` receives a LocalAlloc'ed string freed by `Local`.
        if unsafe { ConvertSidToStringSidW(self.psid(), &mut s) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let _free = Local(s.cast());
        // SAFETY: the string is NUL-terminated UTF-16.
        let len = (0..).take_while(|&i| unsafe { *s.add(i) } != 0).count();
        // SAFETY: `len` u16s were just read.
        let units = unsafe { std::slice::from_raw_parts(s, len) };
        Ok(String::from_utf16_lossy(units))
    }
}

/// The SID string of the current user.
pub fn current_user_sid() -> io::Result<String> {
    UserSid::current()?.to_string_sid()
}

/// The pipe name of the current user.
pub fn current_pipe_name() -> io::Result<String> {
    Ok(pipe_name(&current_user_sid()?))
}

/// A security descriptor: owner and the only allowed user are `sid`; nothing inherited.
fn user_only_descriptor(sid: &str) -> io::Result<Local> {
    let sddl = wide(&format!("O:{sid}D:P(A;;GA;;;{sid})"));
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; `sd` receives a LocalAlloc'ed descriptor.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Local(sd))
}

/// Creates an instance of the daemon's pipe. `first` for the first instance: it fails if the
/// name is taken (by another daemon, or by someone squatting it).
pub fn create_server(name: &str, first: bool) -> io::Result<NamedPipeServer> {
    let sid = current_user_sid()?;
    let sd = user_only_descriptor(&sid)?;
    let mut sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: 0,
    };
    let mut opts = ServerOptions::new();
    opts.first_pipe_instance(first)
        .reject_remote_clients(true)
        .access_inbound(true)
        .access_outbound(true)
        .pipe_mode(PipeMode::Byte);
    // SAFETY: `sa` and the descriptor it points to outlive the call.
    let server = unsafe {
        opts.create_with_security_attributes_raw(name, (&mut sa as *mut SECURITY_ATTRIBUTES).cast())
    };
    server.map_err(|e| {
        if first && e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{name} exists already: another quiver daemon serves it, or another user \
                     created it first; refusing to serve next to it"
                ),
            )
        } else {
            e
        }
    })
}

/// Opens the daemon's pipe and checks that it belongs to the current user.
pub fn connect(name: &str) -> io::Result<NamedPipeClient> {
    let client = ClientOptions::new().open(name)?;
    check_owner(&client)?;
    Ok(client)
}

fn check_owner(client: &NamedPipeClient) -> io::Result<()> {
    use std::os::windows::io::AsRawHandle;
    let me = UserSid::current()?;
    let mut owner: PSID = ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: the handle is open for the call; `owner` points into `sd`, freed by `Local`.
    let rc = unsafe {
        GetSecurityInfo(
            client.as_raw_handle() as HANDLE,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut sd,
        )
    };
    let _free = Local(sd);
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    // SAFETY: both SIDs are valid for the duration of the call.
    if unsafe { EqualSid(owner, me.psid()) } == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the daemon's pipe is owned by another user; refusing to talk to it",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_sid() {
        assert_eq!(
            pipe_name("S-1-5-21-1-2-3-1001"),
            r"\\.\pipe\quiver-S-1-5-21-1-2-3-1001"
        );
        let sid = current_user_sid().unwrap();
        assert!(sid.starts_with("S-1-"), "{sid}");
    }

    #[tokio::test]
    async fn the_first_instance_cannot_be_created_twice() {
        let name = format!(
            r"\\.\pipe\quiver-test-{}-{}",
            std::process::id(),
            current_user_sid().unwrap()
        );
        let _a = create_server(&name, true).unwrap();
        let e = create_server(&name, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        let _b = create_server(&name, false).unwrap();
        connect(&name).unwrap();
    }
}
