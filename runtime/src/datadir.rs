//! The data directory: where it is by default, how its files are created, and when it is
//! private enough to load compiled code from.
//!
//! The database may hold provider-issued passwords an adapter put into its state, and the
//! cache holds native code that wasmtime runs without checking it. So the directory and
//! `cache/` are created 0700 and the files 0600 whatever the umask, and compiled code is
//! loaded only through a data directory, database and cache that belong to the user
//! running Airlock and that nobody else may write (what ssh asks of its keys).

use std::path::{Path, PathBuf};

/// The default data directory: `$XDG_DATA_HOME/airlock`, else `$HOME/.local/share/airlock`.
/// Never the working directory, which may be a checkout someone else wrote. `None` when
/// neither variable holds an absolute path.
pub(crate) fn default_data_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    // The XDG base directory spec: a relative $XDG_DATA_HOME is invalid and is ignored.
    absolute("XDG_DATA_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local/share")))
        .map(|data| data.join("airlock"))
}

/// Create `dir` and any missing parents as 0700 (as the XDG spec asks of directories it
/// creates). A directory that exists already is left as it is: it may be the operator's
/// (`--data-dir /srv/x`), and [`check_private`] judges it before compiled code is loaded.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    for ancestor in dir.ancestors() {
        if ancestor.as_os_str().is_empty() || ancestor.is_dir() {
            break;
        }
        missing.push(ancestor);
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    // The umask may have taken bits away (0o700 & !umask); set exactly 0700 on what we made.
    for created in missing {
        set_mode(created, 0o700)?;
    }
    Ok(())
}

/// Create `file` empty as 0600 if it does not exist; if it exists and belongs to this user,
/// take away any group and other permissions (files of older versions were 0644).
pub(crate) fn create_private_file(file: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => set_mode(file, 0o600),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => tighten(file),
        Err(error) => Err(error),
    }
}

/// Take group and other permissions off an existing file of this user's (if it exists).
pub(crate) fn tighten(file: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(metadata) = std::fs::symlink_metadata(file) else {
            return Ok(());
        };
        if metadata.is_file() && metadata.uid() == current_uid() && metadata.mode() & 0o077 != 0 {
            set_mode(file, metadata.mode() & 0o700)?;
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// The effective user id of this process.
#[cfg(unix)]
pub(crate) fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether `path` (a directory or a file that exists) is private enough to load compiled
/// code through: owned by this process's user and not writable by its group or others.
/// `Err` says what is wrong and how to fix it.
pub(crate) fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path)
            .map_err(|e| format!("refusing to use the compiled-component cache: cannot read the owner and mode of {}: {e}", path.display()))?;
        judge(
            path,
            metadata.is_dir(),
            metadata.uid(),
            metadata.mode(),
            current_uid(),
        )
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// [`check_private`]'s verdict on an owner and mode.
pub(crate) fn judge(path: &Path, is_dir: bool, uid: u32, mode: u32, me: u32) -> Result<(), String> {
    const OWN: &str = "use a data directory of your own (--data-dir DIR, $AIRLOCK_DATA_DIR or RuntimeConfig::data_dir)";
    let shown = path.display();
    if uid != me {
        return Err(format!(
            "refusing to use the compiled-component cache: {shown} is owned by uid {uid}, not by you (uid {me}), so someone else could have planted compiled code in it; {OWN}, or run `chown {me} {shown}` if it is yours"
        ));
    }
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "others",
        (true, true) => "its group and others",
    };
    let private = if is_dir { "700" } else { "600" };
    Err(format!(
        "refusing to use the compiled-component cache: {shown} is writable by {who} (mode {:04o}), so someone else could have planted compiled code in it; run `chmod {private} {shown}`, or {OWN}",
        mode & 0o7777
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_mode_verdicts_say_what_is_wrong_and_how_to_fix_it() {
        let dir = Path::new("/srv/data");
        assert_eq!(judge(dir, true, 1000, 0o40700, 1000), Ok(()));
        assert_eq!(judge(dir, true, 1000, 0o40755, 1000), Ok(()));
        assert_eq!(
            judge(dir, true, 0, 0o40700, 1000).unwrap_err(),
            "refusing to use the compiled-component cache: /srv/data is owned by uid 0, not by you (uid 1000), so someone else could have planted compiled code in it; use a data directory of your own (--data-dir DIR, $AIRLOCK_DATA_DIR or RuntimeConfig::data_dir), or run `chown 1000 /srv/data` if it is yours"
        );
        assert_eq!(
            judge(dir, true, 1000, 0o41777, 1000).unwrap_err(),
            "refusing to use the compiled-component cache: /srv/data is writable by its group and others (mode 1777), so someone else could have planted compiled code in it; run `chmod 700 /srv/data`, or use a data directory of your own (--data-dir DIR, $AIRLOCK_DATA_DIR or RuntimeConfig::data_dir)"
        );
        let file = Path::new("/srv/data/airlock.db");
        assert!(
            judge(file, false, 1000, 0o100664, 1000)
                .unwrap_err()
                .contains("is writable by its group (mode 0664), so someone else could have planted compiled code in it; run `chmod 600 /srv/data/airlock.db`")
        );
        assert!(
            judge(file, false, 1000, 0o100646, 1000)
                .unwrap_err()
                .contains("is writable by others (mode 0646)")
        );
    }

    #[test]
    fn private_directories_and_files_are_0700_and_0600_and_existing_ones_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("a/b/airlock");
        create_private_dir(&data).unwrap();
        for dir in [root.path().join("a"), root.path().join("a/b"), data.clone()] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        // An existing directory is the operator's: its mode stays.
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o755);

        let file = data.join("airlock.db");
        create_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        // A file left 0644 by an older version is made private.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }
}
