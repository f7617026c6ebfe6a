//! Refusing plugin files that someone else could have changed, and opening
//! exactly the file that was checked.
//!
//! On Unix a plugin is trusted when the file it resolves to (after every
//! symlink) is owned by the user or by root and writable by neither its
//! group nor others, and every directory from that file up to `/` (and from
//! the directory holding a symlink up to `/`) is owned by the user or root
//! and writable by neither group nor others, unless it has the sticky bit
//! (like `/tmp`, where nobody may replace a file they do not own) and is
//! owned by the user or root (the owner of a sticky folder may replace
//! anything in it). A folder writable by a group is accepted only when that
//! group can already write a folder above the running clemhost executable
//! (Debian's `/usr/local`, `root:staff` mode 2775, with clemhost installed
//! in `/usr/local/bin`): its members can replace clemhost itself, so a
//! plugin beside it gives them nothing more. The file
//! is opened once, checked through its descriptor (`fstat`), and the dynamic
//! loader is given that descriptor (`/proc/self/fd/N` on Linux), so a file
//! swapped in after the check is never the one loaded.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A plugin file that passed the checks, held open.
#[derive(Debug)]
pub struct TrustedFile {
    /// The descriptor that was checked; kept open until the library is loaded.
    file: File,
    /// The file as the user named it (for messages).
    pub path: PathBuf,
}

impl TrustedFile {
    /// The path to hand to the dynamic loader: the checked descriptor where
    /// the platform can name one, the file's path elsewhere.
    pub fn load_path(&self) -> PathBuf {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
            if fd.exists() {
                return fd;
            }
        }
        self.path.clone()
    }
}

/// Checks that a plugin file may be opened (see the module docs). Returns
/// the reason when it may not.
pub fn check_trust(path: &Path) -> Result<(), String> {
    open_trusted(path).map(drop)
}

/// Opens a plugin file and checks it (see the module docs); the returned
/// descriptor is the file that was checked.
#[cfg(unix)]
pub fn open_trusted(path: &Path) -> Result<TrustedFile, String> {
    use std::os::unix::fs::MetadataExt;
    let file = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read its metadata: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".to_string());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc_geteuid() };
    let resolved =
        std::fs::canonicalize(path).map_err(|e| format!("cannot resolve its path: {e}"))?;
    let shown = if resolved != path {
        format!("the file {} it points to", resolved.display())
    } else {
        "the file".to_string()
    };
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!(
            "{shown} is owned by uid {}, neither you (uid {uid}) nor root; copy it to a directory of your own",
            meta.uid()
        ));
    }
    if meta.mode() & 0o002 != 0 {
        return Err(format!(
            "other users can write to {shown}; run `chmod o-w {}`",
            resolved.display()
        ));
    }
    if meta.mode() & 0o020 != 0 {
        return Err(format!(
            "its group can write to {shown}; run `chmod g-w {}`",
            resolved.display()
        ));
    }
    // The path must still name the file that was opened.
    let now = std::fs::metadata(&resolved).map_err(|e| format!("cannot read it again: {e}"))?;
    if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) {
        return Err("it was replaced while it was being checked".to_string());
    }
    let mut dirs: Vec<PathBuf> = resolved
        .ancestors()
        .skip(1)
        .map(Path::to_path_buf)
        .collect();
    // A symlink's own directory decides where the link points.
    if let Some(link_dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .and_then(|d| std::fs::canonicalize(d).ok())
    {
        dirs.extend(link_dir.ancestors().map(Path::to_path_buf));
    }
    dirs.sort();
    dirs.dedup();
    let exe_groups = exe_writer_groups(uid);
    for dir in dirs.iter().rev() {
        check_dir(dir, uid, &exe_groups)?;
    }
    Ok(TrustedFile {
        file,
        path: path.to_path_buf(),
    })
}

/// The groups that can already replace the running executable: the groups
/// of the folders above it that are group-writable (not sticky) and owned
/// by root or the user.
#[cfg(unix)]
fn exe_writer_groups(uid: u32) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|e| std::fs::canonicalize(e).ok())
    else {
        return Vec::new();
    };
    exe.ancestors()
        .skip(1)
        .filter_map(|d| std::fs::metadata(d).ok())
        .filter(|m| m.mode() & 0o020 != 0 && m.mode() & 0o1000 == 0)
        .filter(|m| m.uid() == uid || m.uid() == 0)
        .map(|m| m.gid())
        .collect()
}

/// Checks one folder above a plugin; `exe_groups` are the groups that can
/// already replace the executable ([`exe_writer_groups`]).
#[cfg(unix)]
fn check_dir(dir: &Path, uid: u32, exe_groups: &[u32]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir)
        .map_err(|e| format!("cannot read its directory {}: {e}", dir.display()))?;
    // With the sticky bit (like /tmp), others cannot replace what they do
    // not own; the folder's owner still can, so it must be you or root.
    let sticky = m.mode() & 0o1000 != 0;
    if m.uid() != uid && m.uid() != 0 {
        return Err(format!(
            "its directory {} is owned by uid {}, neither you (uid {uid}) nor root; copy the plugin to a directory of your own",
            dir.display(),
            m.uid()
        ));
    }
    if !sticky && m.mode() & 0o002 != 0 {
        return Err(format!(
            "other users can write to its directory {}; run `chmod o-w {}`",
            dir.display(),
            dir.display()
        ));
    }
    if !sticky && m.mode() & 0o020 != 0 && !exe_groups.contains(&m.gid()) {
        return Err(format!(
            "its group (gid {}) can write to its directory {}; run `chmod g-w {}`, or put the plugin in a folder only you or root can write",
            m.gid(),
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(unix)]
extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// On other platforms no ownership model is checked; the file is opened by
/// its path.
#[cfg(not(unix))]
pub fn open_trusted(path: &Path) -> Result<TrustedFile, String> {
    let file = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    Ok(TrustedFile {
        file,
        path: path.to_path_buf(),
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("clemhost-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        d
    }

    fn plugin_in(dir: &Path, mode: u32) -> PathBuf {
        let f = dir.join("libx_api.so");
        std::fs::write(&f, b"\x7fELF").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
        f
    }

    #[test]
    fn a_group_writable_plugin_is_refused() {
        let d = scratch("group");
        let f = plugin_in(&d, 0o664);
        let e = check_trust(&f).expect_err("group-writable");
        assert!(
            e.contains("group can write") && e.contains("chmod g-w"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        check_trust(&f).expect("0644 in a 0755 directory is fine");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_symlink_to_a_file_in_a_world_writable_folder_is_refused() {
        let open = scratch("open");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let target = plugin_in(&open, 0o644);
        let mine = scratch("mine");
        let link = mine.join("libx_api.so");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let e = check_trust(&link).expect_err("target dir is world-writable");
        assert!(
            e.contains("other users can write to its directory")
                && e.contains(open.to_str().unwrap()),
            "{e}"
        );
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        check_trust(&link).expect("a link to a safe file is fine");
        let _ = std::fs::remove_dir_all(open);
        let _ = std::fs::remove_dir_all(mine);
    }

    #[test]
    fn a_group_writable_folder_is_trusted_only_for_a_group_that_can_replace_clemhost() {
        use std::os::unix::fs::MetadataExt;
        let d = scratch("gfolder");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o2775)).expect("chmod");
        let gid = std::fs::metadata(&d).expect("meta").gid();
        let uid = std::fs::metadata(&d).expect("meta").uid();
        let e = check_dir(&d, uid, &[]).expect_err("group-writable");
        assert!(
            e.contains("its group (gid") && e.contains("chmod g-w"),
            "{e}"
        );
        check_dir(&d, uid, &[gid]).expect("that group can already replace clemhost");
        check_dir(&d, uid, &[gid + 1]).expect_err("another group");
        let _ = std::fs::remove_dir_all(d);
    }

    /// The owner of a sticky folder may rename or remove anything in it.
    #[test]
    fn a_sticky_folder_of_another_user_is_refused() {
        let d = scratch("sticky");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc_geteuid() };
        check_dir(&d, uid, &[]).expect("your own sticky folder is fine");
        check_dir(Path::new("/tmp"), uid, &[]).expect("root's /tmp is fine");
        let other = uid.wrapping_add(4242);
        if uid == 0 {
            let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: chown takes a NUL-terminated path that `c` owns.
            assert_eq!(
                unsafe { libc::chown(c.as_ptr(), other, u32::MAX) },
                0,
                "chown"
            );
            let e = check_dir(&d, uid, &[]).expect_err("owned by another user");
            assert!(e.contains("neither you"), "{e}");
        } else {
            eprintln!("skipped the other-owner half: it needs root to chown");
        }
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn the_checked_descriptor_is_what_gets_loaded() {
        let d = scratch("fd");
        let f = plugin_in(&d, 0o644);
        let trusted = open_trusted(&f).expect("trusted");
        let load = trusted.load_path();
        // Swap the file after the check: the descriptor still reads the old one.
        std::fs::remove_file(&f).expect("rm");
        std::fs::write(&f, b"swapped").expect("write");
        let read = std::fs::read(&load).expect("read through the descriptor");
        if load != f {
            assert_eq!(read, b"\x7fELF");
        }
        let _ = std::fs::remove_dir_all(d);
    }
}
