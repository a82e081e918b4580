//! The file-system seam of the logs that are read whole and appended to (the DNS update
//! journal, the DDNS queue): `LogFs` opens and replaces a log and keeps damaged bytes aside,
//! `LogFile` appends, syncs and cuts. `RealFs` is the disk; in tests `sim::SimFs` is a disk that
//! keeps written and synced bytes apart and can lose everything not synced (a power cut), so
//! that a missing fsync fails a test, and can fail the next operations (a full or failing disk).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::log::replace::{open_log, private_options, replace_file};
use crate::log::with_suffix;

/// An open log file: the three operations the logs need.
pub(crate) trait LogFile: Send + Sync {
    /// Write all of `bytes` at the end.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// Where logs live: opening one and replacing one atomically.
pub(crate) trait LogFs: Send + Sync {
    /// `open_log`: the bytes (none without a file) and the file opened for appending.
    fn open_log(&self, path: &Path) -> io::Result<(Vec<u8>, Box<dyn LogFile>)>;
    /// `replace_file`: `content` in place of `path`, synced (file and directory) with `fsync`.
    fn replace(
        &self,
        path: &Path,
        content: &[u8],
        fsync: bool,
    ) -> Result<Box<dyn LogFile>, (PathBuf, io::Error)>;
    /// Append `bytes` cut from the log at `path` to `<path>.damaged`, for a person to look at.
    fn keep_damaged(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
}

/// The real file system.
pub(crate) struct RealFs;

impl RealFs {
    pub(crate) fn shared() -> Arc<dyn LogFs> {
        Arc::new(RealFs)
    }
}

impl LogFile for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(self, bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl LogFs for RealFs {
    fn open_log(&self, path: &Path) -> io::Result<(Vec<u8>, Box<dyn LogFile>)> {
        let (bytes, file) = open_log(path)?;
        Ok((bytes, Box::new(file)))
    }
    fn replace(
        &self,
        path: &Path,
        content: &[u8],
        fsync: bool,
    ) -> Result<Box<dyn LogFile>, (PathBuf, io::Error)> {
        replace_file(path, content, fsync).map(|f| Box::new(f) as Box<dyn LogFile>)
    }
    fn keep_damaged(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        private_options()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(with_suffix(path, ".damaged"))
            .and_then(|mut f| f.write_all(bytes))
    }
}

/// A simulated disk for power-loss tests: each file keeps the bytes written and the bytes
/// synced; a rename is durable only once its directory is synced. `power_cut` drops everything
/// not durable, as a power loss may (the worst case POSIX allows).
#[cfg(test)]
pub(crate) mod sim {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Inode {
        data: Vec<u8>,
        synced: Vec<u8>,
    }

    #[derive(Default)]
    struct Disk {
        inodes: Vec<Inode>,
        dir: HashMap<PathBuf, usize>,
        synced_dir: HashMap<PathBuf, usize>,
        /// Operations that work before the failing ones start (`fail`).
        skip: u32,
        /// How many file operations fail after those (`fail`).
        failing: u32,
    }

    impl Disk {
        /// Err if this operation is one of those told to fail.
        fn fault(&mut self) -> io::Result<()> {
            if self.skip > 0 || self.failing == 0 {
                self.skip = self.skip.saturating_sub(1);
                return Ok(());
            }
            self.failing -= 1;
            Err(io::Error::other("simulated disk failure"))
        }

        fn inode(&mut self, path: &Path) -> usize {
            if let Some(&i) = self.dir.get(path) {
                return i;
            }
            self.inodes.push(Inode::default());
            let i = self.inodes.len() - 1;
            self.dir.insert(path.to_path_buf(), i);
            i
        }
    }

    /// Cheap to clone: clones share the disk. std Mutex: held for one operation, no `.await`.
    #[derive(Clone, Default)]
    pub(crate) struct SimFs {
        disk: Arc<Mutex<Disk>>,
    }

    impl SimFs {
        fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
            self.disk.lock().unwrap_or_else(|p| p.into_inner())
        }

        pub(crate) fn shared(&self) -> Arc<dyn LogFs> {
            Arc::new(self.clone())
        }

        /// After `skip` more file operations (append, sync, cut, replace) work, the `n` next
        /// ones fail.
        pub(crate) fn fail(&self, skip: u32, n: u32) {
            let mut disk = self.disk();
            (disk.skip, disk.failing) = (skip, n);
        }

        /// The bytes of `path` as written (empty without such a file).
        pub(crate) fn read(&self, path: &Path) -> Vec<u8> {
            let disk = self.disk();
            disk.dir
                .get(path)
                .map(|&i| disk.inodes[i].data.clone())
                .unwrap_or_default()
        }

        /// The power goes: only synced bytes and synced directory entries remain.
        pub(crate) fn power_cut(&self) {
            let mut disk = self.disk();
            disk.dir = disk.synced_dir.clone();
            for inode in &mut disk.inodes {
                inode.data = inode.synced.clone();
            }
        }
    }

    struct SimFile {
        disk: Arc<Mutex<Disk>>,
        inode: usize,
    }

    impl SimFile {
        /// `f` on this file's inode, unless the operation is told to fail.
        fn with(&self, f: impl FnOnce(&mut Inode)) -> io::Result<()> {
            let mut disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
            disk.fault()?;
            f(&mut disk.inodes[self.inode]);
            Ok(())
        }
    }

    impl LogFile for SimFile {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.with(|i| i.data.extend_from_slice(bytes))
        }
        fn sync_data(&mut self) -> io::Result<()> {
            self.with(|i| i.synced = i.data.clone())
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            self.with(|i| i.data.resize(len, 0))
        }
    }

    impl LogFs for SimFs {
        fn open_log(&self, path: &Path) -> io::Result<(Vec<u8>, Box<dyn LogFile>)> {
            let mut disk = self.disk();
            let inode = disk.inode(path);
            let bytes = disk.inodes[inode].data.clone();
            let file = SimFile {
                disk: self.disk.clone(),
                inode,
            };
            Ok((bytes, Box::new(file)))
        }

        fn replace(
            &self,
            path: &Path,
            content: &[u8],
            fsync: bool,
        ) -> Result<Box<dyn LogFile>, (PathBuf, io::Error)> {
            let mut disk = self.disk();
            disk.fault().map_err(|e| (path.to_path_buf(), e))?;
            disk.inodes.push(Inode {
                data: content.to_vec(),
                synced: if fsync { content.to_vec() } else { Vec::new() },
            });
            let inode = disk.inodes.len() - 1;
            disk.dir.insert(path.to_path_buf(), inode);
            if fsync {
                disk.synced_dir = disk.dir.clone();
            }
            Ok(Box::new(SimFile {
                disk: self.disk.clone(),
                inode,
            }))
        }

        fn keep_damaged(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            let mut disk = self.disk();
            let inode = disk.inode(&with_suffix(path, ".damaged"));
            disk.inodes[inode].data.extend_from_slice(bytes);
            Ok(())
        }
    }
}
