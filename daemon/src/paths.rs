//! Where Quiver keeps its files (ARCHITECTURE.md, "Names and locations").
//!
//! - data dir: `$QUIVER_DATA_DIR`, else `$XDG_DATA_HOME/quiver`, else `$HOME/.local/share/quiver`
//!   (`quiver.db`, `logs/`)
//! - socket dir: `$QUIVER_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/quiver`, else `/tmp/quiver-<uid>`
//!   (`daemon.sock`, `daemon.lock`, `daemon.pid`), mode 0700, owned by the user.
//!
//! The resolution is a pure function of [`Env`] so every rule is unit-tested.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const DB_FILE: &str = "quiver.db";
pub const LOG_DIR: &str = "logs";
pub const SOCKET_FILE: &str = "daemon.sock";
pub const LOCK_FILE: &str = "daemon.lock";
pub const PID_FILE: &str = "daemon.pid";

/// The environment the paths are derived from.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub quiver_data_dir: Option<OsString>,
    pub xdg_data_home: Option<OsString>,
    pub home: Option<OsString>,
    pub quiver_runtime_dir: Option<OsString>,
    pub xdg_runtime_dir: Option<OsString>,
    pub uid: u32,
}

impl Env {
    /// Reads the process environment. Empty variables count as unset.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        Env {
            quiver_data_dir: var("QUIVER_DATA_DIR"),
            xdg_data_home: var("XDG_DATA_HOME"),
            home: var("HOME"),
            quiver_runtime_dir: var("QUIVER_RUNTIME_DIR"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            uid: crate::sys::uid(),
        }
    }
}

/// Our own override variables must be absolute: the daemon is started by the native host, whose
/// working directory is whatever the browser chose.
fn absolute_override(
    name: &'static str,
    v: &Option<OsString>,
) -> Result<Option<PathBuf>, PathError> {
    match v {
        None => Ok(None),
        Some(v) => {
            let p = PathBuf::from(v);
            if p.is_absolute() {
                Ok(Some(p))
            } else {
                Err(PathError::NotAbsolute {
                    name,
                    value: p.display().to_string(),
                })
            }
        }
    }
}

/// XDG base directory variables that are not absolute are ignored (XDG spec).
fn xdg(v: &Option<OsString>) -> Option<PathBuf> {
    v.as_ref().map(PathBuf::from).filter(|p| p.is_absolute())
}

/// The data directory (not created).
pub fn data_dir(env: &Env) -> Result<PathBuf, PathError> {
    if let Some(p) = absolute_override("QUIVER_DATA_DIR", &env.quiver_data_dir)? {
        return Ok(p);
    }
    if let Some(p) = xdg(&env.xdg_data_home) {
        return Ok(p.join("quiver"));
    }
    match xdg(&env.home) {
        Some(h) => Ok(h.join(".local/share/quiver")),
        None => Err(PathError::NoHome),
    }
}

/// The socket directory (not created).
pub fn runtime_dir(env: &Env) -> Result<PathBuf, PathError> {
    if let Some(p) = absolute_override("QUIVER_RUNTIME_DIR", &env.quiver_runtime_dir)? {
        return Ok(p);
    }
    if let Some(p) = xdg(&env.xdg_runtime_dir) {
        return Ok(p.join("quiver"));
    }
    Ok(PathBuf::from(format!("/tmp/quiver-{}", env.uid)))
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Why a socket directory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to use socket directory {}: {problem}", dir.display())]
pub struct UnsafeDir {
    pub dir: PathBuf,
    pub problem: String,
}

/// Why the data or socket directory cannot be found or used.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{name} must be an absolute path (it is {value:?})")]
    NotAbsolute { name: &'static str, value: String },
    #[error(
        "cannot tell where to keep Quiver's data: set QUIVER_DATA_DIR, XDG_DATA_HOME or HOME to \
         an absolute path"
    )]
    NoHome,
    #[error("cannot {what} data directory {}: {source}", dir.display())]
    DataDir {
        what: &'static str,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("data directory {} is not writable: {source}", dir.display())]
    NotWritable {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Unsafe(#[from] UnsafeDir),
}

/// Checks that `dir` is a real directory (not a symlink), owned by `uid`, with no access for
/// group or others. Another user who created `/tmp/quiver-<uid>` first, or a directory opened
/// up by mistake, would otherwise let other users talk to (or impersonate) the daemon.
pub fn check_private_dir(dir: &Path, uid: u32) -> Result<(), UnsafeDir> {
    let bad = |problem: String| UnsafeDir {
        dir: dir.to_path_buf(),
        problem,
    };
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| bad(format!("cannot inspect it: {e}")))?;
    if meta.file_type().is_symlink() {
        return Err(bad(
            "it is a symbolic link; it must be a real directory".into()
        ));
    }
    if !meta.is_dir() {
        return Err(bad("it is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(bad(format!(
            "it is owned by uid {}, not by you (uid {uid}); remove it or set QUIVER_RUNTIME_DIR",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "it has mode {mode:04o}, which gives group or others access; it must be 0700 \
             (run: chmod 700 {})",
            dir.display()
        )));
    }
    Ok(())
}

/// Creates the socket directory if needed (mode 0700) and checks it.
pub fn ensure_runtime_dir(dir: &Path, uid: u32) -> Result<(), UnsafeDir> {
    if std::fs::symlink_metadata(dir).is_err() {
        create_private_dir_all(dir).map_err(|e| UnsafeDir {
            dir: dir.to_path_buf(),
            problem: format!("cannot create it: {e}"),
        })?;
    }
    check_private_dir(dir, uid)
}

/// Creates the data directory (mode 0700 when new) and its `logs/`, and checks it is writable.
pub fn ensure_data_dir(dir: &Path) -> Result<(), PathError> {
    let failed = |what, source| PathError::DataDir {
        what,
        dir: dir.to_path_buf(),
        source,
    };
    create_private_dir_all(&dir.join(LOG_DIR)).map_err(|e| failed("create", e))?;
    let meta = std::fs::metadata(dir).map_err(|e| failed("inspect", e))?;
    if !meta.is_dir() {
        return Err(PathError::NotADirectory(dir.to_path_buf()));
    }
    // Probe: permissions alone do not tell (read-only mounts, root squashing, ACLs).
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|source| PathError::NotWritable {
        dir: dir.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The data directory's mode when it lets group or others in (they could list it, or read files
/// that were created without a private mode), as a warning for the log and `quiver doctor`.
pub fn exposed_data_dir(dir: &Path) -> Option<String> {
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "data directory {} has mode {mode:04o}: group or others can look inside; it should \
             be 0700 (run: chmod 700 {})",
            dir.display(),
            dir.display()
        )
    })
}

/// Makes the database (with its WAL and shared-memory files) and the logs in `dir` private
/// (0600), whatever mode an older version or another umask gave them. Returns what was changed.
pub fn make_files_private(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| dir.join(format!("{DB_FILE}{suffix}")))
        .collect();
    if let Ok(rd) = std::fs::read_dir(dir.join(LOG_DIR)) {
        files.extend(rd.flatten().map(|e| e.path()));
    }
    let mut changed = Vec::new();
    for f in files {
        // never follow a link planted in the data dir
        let Ok(meta) = std::fs::symlink_metadata(&f) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_file() && mode & 0o077 != 0 {
            match std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => changed.push(format!("{} was {mode:04o}, now 0600", f.display())),
                Err(e) => changed.push(format!(
                    "{} is {mode:04o} and cannot be made 0600: {e}",
                    f.display()
                )),
            }
        }
    }
    changed
}

/// The resolved locations of one daemon.
#[derive(Debug, Clone)]
pub struct Locations {
    pub data_dir: PathBuf,
    pub runtime_dir: PathBuf,
}

impl Locations {
    pub fn resolve(env: &Env) -> Result<Locations, PathError> {
        Ok(Locations {
            data_dir: data_dir(env)?,
            runtime_dir: runtime_dir(env)?,
        })
    }
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join(SOCKET_FILE)
    }
    pub fn lock(&self) -> PathBuf {
        self.runtime_dir.join(LOCK_FILE)
    }
    pub fn pid(&self) -> PathBuf {
        self.runtime_dir.join(PID_FILE)
    }
    pub fn db(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.data_dir.join(LOG_DIR).join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            uid: 1000,
            ..Env::default()
        }
    }

    #[test]
    fn data_dir_precedence() {
        let mut e = env();
        assert!(data_dir(&e).is_err());
        e.home = Some("/home/u".into());
        assert_eq!(
            data_dir(&e).unwrap(),
            Path::new("/home/u/.local/share/quiver")
        );
        e.xdg_data_home = Some("relative/ignored".into());
        assert_eq!(
            data_dir(&e).unwrap(),
            Path::new("/home/u/.local/share/quiver")
        );
        e.xdg_data_home = Some("/xdg/data".into());
        assert_eq!(data_dir(&e).unwrap(), Path::new("/xdg/data/quiver"));
        e.quiver_data_dir = Some("/q/data".into());
        assert_eq!(data_dir(&e).unwrap(), Path::new("/q/data"));
        e.quiver_data_dir = Some("q/data".into());
        let err = data_dir(&e).unwrap_err().to_string();
        assert!(
            err.contains("QUIVER_DATA_DIR") && err.contains("absolute"),
            "{err}"
        );
    }

    #[test]
    fn runtime_dir_precedence() {
        let mut e = env();
        assert_eq!(runtime_dir(&e).unwrap(), Path::new("/tmp/quiver-1000"));
        e.xdg_runtime_dir = Some("/run/user/1000".into());
        assert_eq!(runtime_dir(&e).unwrap(), Path::new("/run/user/1000/quiver"));
        e.quiver_runtime_dir = Some("/q/run".into());
        assert_eq!(runtime_dir(&e).unwrap(), Path::new("/q/run"));
        e.quiver_runtime_dir = Some("run".into());
        assert!(runtime_dir(&e)
            .unwrap_err()
            .to_string()
            .contains("QUIVER_RUNTIME_DIR"));
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("quiver-paths-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn runtime_dir_is_created_private_and_checked() {
        let base = scratch("rt");
        let dir = base.join("a/b");
        let uid = crate::sys::uid();
        ensure_runtime_dir(&dir, uid).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // someone else's uid
        let e = check_private_dir(&dir, uid + 1).unwrap_err();
        assert!(e.problem.contains("owned by uid"), "{e}");
        // opened up
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = ensure_runtime_dir(&dir, uid).unwrap_err();
        assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
        assert!(e.problem.contains("0755"), "{e}");
        // a symlink to a good directory is refused too
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_private_dir(&link, uid)
            .unwrap_err()
            .problem
            .contains("symbolic link"));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn data_dir_errors_name_the_path() {
        let base = scratch("data");
        std::fs::create_dir_all(&base).unwrap();
        let file = base.join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = ensure_data_dir(&file.join("quiver"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        ensure_data_dir(&base.join("ok")).unwrap();
        assert!(base.join("ok/logs").is_dir());
        let _ = std::fs::remove_dir_all(&base);
    }
}
