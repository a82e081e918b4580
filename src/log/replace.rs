//! Creating and replacing log files safely: every file leasedns creates is private
//! (`FILE_MODE`), a temporary is created fresh with `O_EXCL | O_NOFOLLOW` (`create_temp`), and a
//! file is replaced atomically (`replace_file`: temporary written and fsynced, renamed over the
//! file, directory fsynced). Knows no record's payload.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::log::{parent_dir, with_suffix};

/// The mode of every file leasedns creates (lease journal, snapshot, their temporaries,
/// `.damaged`, the DNS update journal, the DDNS queue): leases name clients and their hardware
/// addresses, which other local users have no business reading. The process umask (027, set by
/// `daemon::run`) can only tighten it.
pub(crate) const FILE_MODE: u32 = 0o640;

/// Options that create a missing file with `FILE_MODE` (an existing file keeps its mode).
pub(crate) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// A fresh temporary file at `path` for writing: any stale one (file or planted symlink) is
/// removed first, then the name is created with `O_EXCL | O_NOFOLLOW` and `FILE_MODE`, so that
/// a symlink put there between the two steps makes the open fail instead of being followed.
pub(crate) fn create_temp(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    private_options()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The bytes of the log at `path` (none if there is no file yet), and the file opened (created
/// with `FILE_MODE` if needed) for appending.
pub(crate) fn open_log(path: &Path) -> io::Result<(Vec<u8>, File)> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let file = private_options().create(true).append(true).open(path)?;
    Ok((bytes, file))
}

/// Replace `path` with `content` atomically: written to a fresh `<path>.tmp` (`create_temp`: a
/// symlink there is not followed; synced with `fsync`), renamed over `path` (the directory
/// synced with `fsync`). Returns `path` opened for appending; on error, the path the failing
/// step was on.
pub(crate) fn replace_file(
    path: &Path,
    content: &[u8],
    fsync: bool,
) -> Result<File, (PathBuf, io::Error)> {
    let tmp = with_suffix(path, ".tmp");
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut file = create_temp(&tmp).map_err(at(&tmp))?;
    file.write_all(content).map_err(at(&tmp))?;
    if fsync {
        file.sync_all().map_err(at(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(at(path))?;
    if fsync {
        let dir = parent_dir(path);
        sync_dir(&dir).map_err(at(&dir))?;
    }
    OpenOptions::new().append(true).open(path).map_err(at(path))
}

/// fsync the directory `dir`, so that renames and creations in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::checks::{assert_private, plant};
    use super::*;
    use crate::log::with_suffix;

    #[test]
    fn open_log_creates_a_missing_file_and_reads_an_existing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let (bytes, mut file) = open_log(&path).expect("opens");
        assert!(bytes.is_empty() && path.exists());
        file.write_all(b"one\n").expect("append");
        drop(file);
        let (bytes, mut file) = open_log(&path).expect("reopens");
        assert_eq!(bytes, b"one\n");
        file.write_all(b"two\n").expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"one\ntwo\n");
        assert!(open_log(dir.path()).is_err(), "a directory is no log");
    }

    #[test]
    fn replace_file_swaps_the_content_and_appends_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        fs::write(&path, "old old old\n").expect("write");
        for fsync in [true, false] {
            let mut file = replace_file(&path, b"new\n", fsync).expect("replaced");
            file.write_all(b"more\n").expect("append");
            assert_eq!(fs::read_to_string(&path).expect("read"), "new\nmore\n");
            assert!(!with_suffix(&path, ".tmp").exists());
        }
        let missing = dir.path().join("no-such-dir").join("log");
        let (at, _) = replace_file(&missing, b"x", false).expect_err("no directory");
        assert_eq!(at, with_suffix(&missing, ".tmp"));
    }

    #[test]
    fn temporaries_are_private_fresh_and_never_opened_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tmp = dir.path().join("x.tmp");
        // A stale file is replaced by a fresh, private one.
        fs::write(&tmp, "stale").expect("write");
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .expect("chmod");
        let mut file = create_temp(&tmp).expect("created");
        file.write_all(b"new").expect("write");
        assert_eq!(fs::read(&tmp).expect("read"), b"new");
        assert_private(&tmp);
        // A planted symlink is removed, not written through.
        fs::remove_file(&tmp).expect("rm");
        let victim = plant(dir.path(), &tmp, "victim");
        create_temp(&tmp)
            .expect("created")
            .write_all(b"mine")
            .expect("write");
        assert_eq!(fs::read(&victim).expect("read"), b"victim\n");
        assert_private(&tmp);
        // The open itself refuses a symlink put there after the removal (the race it closes),
        // to an existing file or to a missing one.
        for target in ["victim", "missing"] {
            fs::remove_file(&tmp).expect("rm");
            std::os::unix::fs::symlink(dir.path().join(target), &tmp).expect("symlink");
            let opened = private_options()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp);
            assert!(opened.is_err(), "opened through a symlink to {target}");
        }
        assert!(!dir.path().join("missing").exists());
        assert_eq!(fs::read(&victim).expect("read"), b"victim\n");
    }

    #[test]
    fn logs_and_their_replacements_are_private_and_a_planted_tmp_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let (_, file) = open_log(&path).expect("opens");
        drop(file);
        assert_private(&path);
        let victim = plant(dir.path(), &with_suffix(&path, ".tmp"), "victim");
        let mut file = replace_file(&path, b"new\n", true).expect("replaced");
        file.write_all(b"more\n").expect("append");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new\nmore\n");
        assert_eq!(fs::read(&victim).expect("read"), b"victim\n");
        assert_private(&path);
    }
}

/// Checks of the files a log creates, for the tests of every log.
#[cfg(test)]
pub(crate) mod checks {
    use super::*;
    /// The permission bits of `path` (not following a symlink).
    pub(crate) fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    /// 0640 or tighter: no write for the group, nothing for others.
    pub(crate) fn assert_private(path: &Path) {
        let m = mode(path);
        assert_eq!(m & !FILE_MODE, 0, "{} has mode {m:o}", path.display());
        assert!(fs::symlink_metadata(path).expect("metadata").is_file());
    }

    /// A symlink at `at` to a file `victim` holding "victim\n".
    pub(crate) fn plant(dir: &Path, at: &Path, victim: &str) -> PathBuf {
        let victim = dir.join(victim);
        fs::write(&victim, "victim\n").expect("victim");
        std::os::unix::fs::symlink(&victim, at).expect("symlink");
        victim
    }
}
