//! Refusing plugin files that someone else could have changed.

use std::path::Path;

/// Checks that a plugin file may be opened: neither the file nor its
/// directory is writable by other users, and the file is owned by the user
/// or by root. Returns the reason when it may not.
#[cfg(unix)]
pub fn check_trust(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read its metadata: {e}"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc_geteuid() };
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!(
            "the file is owned by uid {}, neither you (uid {uid}) nor root; copy it to a directory of your own",
            meta.uid()
        ));
    }
    if meta.mode() & 0o002 != 0 {
        return Err("other users can write to the file; run `chmod o-w` on it".to_string());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dmeta =
            std::fs::metadata(dir).map_err(|e| format!("cannot read its directory: {e}"))?;
        // A world-writable directory is fine only with the sticky bit (like /tmp),
        // where others cannot replace files they do not own.
        if dmeta.mode() & 0o002 != 0 && dmeta.mode() & 0o1000 == 0 {
            return Err(format!(
                "other users can write to its directory {}; run `chmod o-w` on it",
                dir.display()
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// On other platforms no ownership model is checked.
#[cfg(not(unix))]
pub fn check_trust(_path: &Path) -> Result<(), String> {
    Ok(())
}
