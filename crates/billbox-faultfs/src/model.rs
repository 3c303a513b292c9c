//! The disk model: the current (volatile) tree and data, the durable tree
//! and data, and the pending operations between them.
//!
//! Every method here runs under the one state lock and applies an operation
//! synchronously; holding, delaying and failing requests is `fs.rs`'s job.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};

use crate::control::{Cut, CutReport, Torn};

/// The root directory's inode number (FUSE's fixed `FUSE_ROOT_ID`).
pub(crate) const ROOT: u64 = 1;

/// The sector size a torn write is cut at.
const SECTOR: u64 = 512;

/// The longest name a directory entry may have.
const NAME_MAX: usize = 255;

/// How many entries one readdir answer takes at most.
const READDIR_CHUNK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
}

/// One inode. Files and directories only: no hard links, so each inode has
/// at most one name in the current tree (`parent` + `name`, kept as the last
/// name after an unlink so faults can still match its path).
#[derive(Debug)]
pub(crate) struct Inode {
    kind: Kind,
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    crtime: SystemTime,
    parent: u64,
    name: OsString,
    /// Has a name in the current tree.
    linked: bool,
    /// Has a name in the durable tree.
    dur_linked: bool,
    /// Pending namespace operations that name this inode: it must live
    /// until they are committed or dropped.
    journal_refs: u32,
    /// Open file handles (directories: always 0).
    open: u32,
    /// Current entries (directories only).
    children: BTreeMap<OsString, u64>,
    /// Contents (files only).
    data: Option<FileData>,
}

#[derive(Debug)]
struct FileData {
    /// Current size (the length of the `cur` backing file).
    size: u64,
    /// `<backing>/cur/<ino>`, open read-write.
    cur: File,
    /// Operations since the last fsync, in the order they were applied to
    /// `cur`; replaying them over `<backing>/dur/<ino>` makes it equal `cur`.
    pending: Vec<DataOp>,
    /// A writeback error forgot pending operations: `cur` holds data that
    /// `dur` never will, so a cut restores `cur` from `dur` even with
    /// nothing pending.
    diverged: bool,
}

#[derive(Debug)]
enum DataOp {
    Write {
        seq: u64,
        off: u64,
        data: Vec<u8>,
    },
    SetLen {
        seq: u64,
        len: u64,
    },
    Allocate {
        seq: u64,
        off: u64,
        len: u64,
        mode: i32,
    },
}

impl DataOp {
    fn seq(&self) -> u64 {
        match self {
            DataOp::Write { seq, .. }
            | DataOp::SetLen { seq, .. }
            | DataOp::Allocate { seq, .. } => *seq,
        }
    }

    /// Applies the operation to `f`; for a write, only its first `prefix`
    /// bytes when given.
    fn apply(&self, f: &File, prefix: Option<u64>) -> io::Result<()> {
        match self {
            DataOp::Write { off, data, .. } => {
                let n = prefix.map_or(data.len(), |p| p.min(data.len() as u64) as usize);
                f.write_all_at(&data[..n], *off)
            }
            DataOp::SetLen { len, .. } => f.set_len(*len),
            DataOp::Allocate { off, len, mode, .. } => fallocate(f, *off, *len, *mode),
        }
    }
}

fn fallocate(f: &File, off: u64, len: u64, mode: i32) -> io::Result<()> {
    let flags = nix::fcntl::FallocateFlags::from_bits(mode)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EOPNOTSUPP))?;
    let off = i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    nix::fcntl::fallocate(f.as_raw_fd(), flags, off, len).map_err(io::Error::from)
}

/// One primitive change of the durable tree.
#[derive(Debug)]
enum Edit {
    Add {
        dir: u64,
        name: OsString,
        ino: u64,
    },
    /// `dispose`: the inode loses its last durable name (unlink, rmdir, a
    /// rename's replaced target) rather than moving (a rename's source).
    Remove {
        dir: u64,
        name: OsString,
        ino: u64,
        dispose: bool,
    },
}

/// One pending namespace operation (a journal transaction).
#[derive(Debug)]
struct NsOp {
    /// The directories whose entries it changes (one, or two for a rename
    /// between directories).
    dirs: [u64; 2],
    edits: Vec<Edit>,
    /// The inodes it names (each holds a `journal_refs`).
    inos: Vec<u64>,
}

#[derive(Debug)]
enum Handle {
    File {
        ino: u64,
    },
    Dir {
        ino: u64,
        entries: Option<Vec<DirEntry>>,
    },
}

/// One directory entry as readdir lists it.
#[derive(Debug, Clone)]
pub(crate) struct DirEntry {
    pub(crate) ino: u64,
    pub(crate) kind: FileType,
    pub(crate) name: OsString,
}

/// What a setattr changes.
#[derive(Debug, Default)]
pub(crate) struct SetAttr {
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<TimeOrNow>,
    pub(crate) mtime: Option<TimeOrNow>,
    pub(crate) ctime: Option<SystemTime>,
}

/// Who creates an inode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The whole file system state.
#[derive(Debug)]
pub(crate) struct Model {
    root: PathBuf,
    cur_dir: PathBuf,
    dur_dir: PathBuf,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// The durable tree: directory inode -> its durable entries.
    dur_dirs: HashMap<u64, BTreeMap<OsString, u64>>,
    /// Pending namespace operations, oldest first.
    journal: Vec<NsOp>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Orders data operations across inodes (for the cut variants).
    next_seq: u64,
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn check_name(name: &OsStr) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

/// splitmix64: small, deterministic by seed, good enough to pick writes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One pending data operation, as a cut decides about it.
struct PendingRef {
    seq: u64,
    ino: u64,
    /// A write's offset and length.
    write: Option<(u64, u64)>,
}

/// What a cut keeps of one pending data operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    Whole,
    /// A write's first N bytes.
    Prefix(u64),
}

impl Model {
    /// A new, empty file system over `root` (which holds `cur/` and `dur/`).
    pub(crate) fn new(root: &Path) -> Model {
        let now = SystemTime::now();
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT,
            Inode {
                kind: Kind::Dir,
                perm: 0o755,
                uid: nix::unistd::getuid().as_raw(),
                gid: nix::unistd::getgid().as_raw(),
                atime: now,
                mtime: now,
                ctime: now,
                crtime: now,
                parent: ROOT,
                name: OsString::new(),
                linked: true,
                dur_linked: true,
                journal_refs: 0,
                open: 0,
                children: BTreeMap::new(),
                data: None,
            },
        );
        let mut dur_dirs = HashMap::new();
        dur_dirs.insert(ROOT, BTreeMap::new());
        Model {
            root: root.to_path_buf(),
            cur_dir: root.join("cur"),
            dur_dir: root.join("dur"),
            inodes,
            next_ino: ROOT + 1,
            dur_dirs,
            journal: Vec::new(),
            handles: HashMap::new(),
            next_fh: 1,
            next_seq: 1,
        }
    }

    /// The backing directory (for statfs).
    pub(crate) fn backing(&self) -> &Path {
        &self.root
    }

    fn cur_path(&self, ino: u64) -> PathBuf {
        self.cur_dir.join(ino.to_string())
    }

    fn dur_path(&self, ino: u64) -> PathBuf {
        self.dur_dir.join(ino.to_string())
    }

    fn node(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: u64) -> Result<&Inode, Errno> {
        let n = self.node(ino)?;
        if n.kind != Kind::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok(n)
    }

    fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn new_handle(&mut self, h: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        fh
    }

    /// A file handle from before the last cut (or never given) is stale.
    fn check_file(&self, fh: u64, ino: u64) -> Result<(), Errno> {
        match self.handles.get(&fh) {
            Some(Handle::File { ino: i }) if *i == ino => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    fn check_dir(&self, fh: u64, ino: u64) -> Result<(), Errno> {
        match self.handles.get(&fh) {
            Some(Handle::Dir { ino: i, .. }) if *i == ino => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    /// The current path of an inode relative to the mount root ("" for the
    /// root); for an unlinked inode, the path it had.
    pub(crate) fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT && parts.len() < 4096 {
            let Some(n) = self.inodes.get(&at) else { break };
            parts.push(n.name.to_string_lossy().into_owned());
            at = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// The path of `name` in directory `parent`.
    pub(crate) fn entry_path(&self, parent: u64, name: &OsStr) -> String {
        let p = self.path_of(parent);
        if p.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{p}/{}", name.to_string_lossy())
        }
    }

    /// The attributes of an inode (`ENOENT` when it does not exist).
    pub(crate) fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let n = self.node(ino)?;
        let size = n.data.as_ref().map_or(0, |d| d.size);
        let nlink = match n.kind {
            Kind::Dir => {
                let subdirs = n
                    .children
                    .values()
                    .filter(|c| self.inodes.get(c).is_some_and(|c| c.kind == Kind::Dir))
                    .count();
                2 + u32::try_from(subdirs).unwrap_or(u32::MAX - 2)
            }
            Kind::File => u32::from(n.linked),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            crtime: n.crtime,
            kind: file_type(n.kind),
            perm: n.perm,
            nlink,
            uid: n.uid,
            gid: n.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Getattr, with the handle checked when the kernel gives one.
    pub(crate) fn getattr(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr, Errno> {
        if let Some(fh) = fh {
            if !self.handles.contains_key(&fh) {
                return Err(Errno::EIO);
            }
        }
        self.attr(ino)
    }

    /// Whether an inode is a directory.
    pub(crate) fn is_dir(&self, ino: u64) -> bool {
        self.inodes.get(&ino).is_some_and(|n| n.kind == Kind::Dir)
    }

    /// The inode `name` in `parent` names now.
    pub(crate) fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.inodes.get(&parent)?.children.get(name).copied()
    }

    /// The attributes of `name` in `parent`.
    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let p = self.dir(parent)?;
        let ino = if name == "." {
            parent
        } else if name == ".." {
            p.parent
        } else {
            *p.children.get(name).ok_or(Errno::ENOENT)?
        };
        self.attr(ino)
    }

    /// Access check: the inode must exist (there are no permission checks).
    pub(crate) fn access(&self, ino: u64) -> Result<(), Errno> {
        self.node(ino).map(|_| ())
    }

    fn push_op(&mut self, op: NsOp) {
        for ino in &op.inos {
            if let Some(n) = self.inodes.get_mut(ino) {
                n.journal_refs += 1;
            }
        }
        self.journal.push(op);
    }

    fn touch_dir(&mut self, dir: u64) {
        if let Some(d) = self.inodes.get_mut(&dir) {
            let now = SystemTime::now();
            d.mtime = now;
            d.ctime = now;
        }
    }

    fn new_inode(
        &mut self,
        kind: Kind,
        parent: u64,
        name: &OsStr,
        perm: u16,
        owner: Owner,
    ) -> Result<u64, Errno> {
        let ino = self.next_ino;
        let data = match kind {
            Kind::Dir => None,
            Kind::File => {
                let cur = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(self.cur_path(ino))
                    .map_err(errno)?;
                Some(FileData {
                    size: 0,
                    cur,
                    pending: Vec::new(),
                    diverged: false,
                })
            }
        };
        self.next_ino += 1;
        let now = SystemTime::now();
        self.inodes.insert(
            ino,
            Inode {
                kind,
                perm,
                uid: owner.uid,
                gid: owner.gid,
                atime: now,
                mtime: now,
                ctime: now,
                crtime: now,
                parent,
                name: name.to_os_string(),
                linked: true,
                dur_linked: false,
                journal_refs: 0,
                open: 0,
                children: BTreeMap::new(),
                data,
            },
        );
        Ok(ino)
    }

    /// Creates `name` in `parent` (a file or a directory), volatile until an
    /// fsync of `parent`; with `open`, also opens it (a file's create).
    pub(crate) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        mode: u32,
        owner: Owner,
        open: bool,
    ) -> Result<(FileAttr, Option<u64>), Errno> {
        check_name(name)?;
        if self.dir(parent)?.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.new_inode(kind, parent, name, (mode & 0o7777) as u16, owner)?;
        if let Some(p) = self.inodes.get_mut(&parent) {
            p.children.insert(name.to_os_string(), ino);
        }
        self.touch_dir(parent);
        self.push_op(NsOp {
            dirs: [parent, parent],
            edits: vec![Edit::Add {
                dir: parent,
                name: name.to_os_string(),
                ino,
            }],
            inos: vec![ino],
        });
        let fh = if open {
            if let Some(n) = self.inodes.get_mut(&ino) {
                n.open += 1;
            }
            Some(self.new_handle(Handle::File { ino }))
        } else {
            None
        };
        Ok((self.attr(ino)?, fh))
    }

    /// Removes `name` from `parent`: a file (`dir == false`) or an empty
    /// directory. Volatile until an fsync of `parent`.
    pub(crate) fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.children.get(name).ok_or(Errno::ENOENT)?;
        let n = self.node(ino)?;
        match (dir, n.kind) {
            (false, Kind::Dir) => return Err(Errno::EISDIR),
            (true, Kind::File) => return Err(Errno::ENOTDIR),
            (true, Kind::Dir) if !n.children.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        if let Some(p) = self.inodes.get_mut(&parent) {
            p.children.remove(name);
        }
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.linked = false;
            n.ctime = SystemTime::now();
        }
        self.touch_dir(parent);
        self.push_op(NsOp {
            dirs: [parent, parent],
            edits: vec![Edit::Remove {
                dir: parent,
                name: name.to_os_string(),
                ino,
                dispose: true,
            }],
            inos: vec![ino],
        });
        Ok(())
    }

    /// Renames `parent/name` to `newparent/newname` (replacing a target unless
    /// `noreplace`). One pending operation touching both directories.
    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        noreplace: bool,
    ) -> Result<(), Errno> {
        check_name(newname)?;
        let src = *self.dir(parent)?.children.get(name).ok_or(Errno::ENOENT)?;
        let target = self.dir(newparent)?.children.get(newname).copied();
        if target == Some(src) {
            return Ok(());
        }
        if noreplace && target.is_some() {
            return Err(Errno::EEXIST);
        }
        let src_kind = self.node(src)?.kind;
        if src_kind == Kind::Dir {
            // Not into its own subtree.
            let mut at = newparent;
            loop {
                if at == src {
                    return Err(Errno::EINVAL);
                }
                if at == ROOT {
                    break;
                }
                at = self.node(at)?.parent;
            }
        }
        if let Some(t) = target {
            let t = self.node(t)?;
            match (src_kind, t.kind) {
                (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
                (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
                (Kind::Dir, Kind::Dir) if !t.children.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        if let Some(p) = self.inodes.get_mut(&parent) {
            p.children.remove(name);
        }
        if let Some(t) = target {
            if let Some(t) = self.inodes.get_mut(&t) {
                t.linked = false;
            }
        }
        if let Some(p) = self.inodes.get_mut(&newparent) {
            p.children.insert(newname.to_os_string(), src);
        }
        if let Some(s) = self.inodes.get_mut(&src) {
            s.parent = newparent;
            s.name = newname.to_os_string();
            s.ctime = SystemTime::now();
        }
        self.touch_dir(parent);
        self.touch_dir(newparent);
        let mut edits = vec![Edit::Remove {
            dir: parent,
            name: name.to_os_string(),
            ino: src,
            dispose: false,
        }];
        let mut inos = vec![src];
        if let Some(t) = target {
            edits.push(Edit::Remove {
                dir: newparent,
                name: newname.to_os_string(),
                ino: t,
                dispose: true,
            });
            inos.push(t);
        }
        edits.push(Edit::Add {
            dir: newparent,
            name: newname.to_os_string(),
            ino: src,
        });
        self.push_op(NsOp {
            dirs: [parent, newparent],
            edits,
            inos,
        });
        Ok(())
    }

    /// Opens a file.
    pub(crate) fn open(&mut self, ino: u64) -> Result<u64, Errno> {
        let n = self.node_mut(ino)?;
        if n.kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        n.open += 1;
        Ok(self.new_handle(Handle::File { ino }))
    }

    /// Flush (close of one descriptor): only checks the handle.
    pub(crate) fn flush(&self, ino: u64, fh: u64) -> Result<(), Errno> {
        self.check_file(fh, ino)
    }

    /// Releases a file handle (a stale one is simply forgotten).
    pub(crate) fn release(&mut self, fh: u64) {
        if let Some(Handle::File { ino }) = self.handles.remove(&fh) {
            if let Some(n) = self.inodes.get_mut(&ino) {
                n.open = n.open.saturating_sub(1);
            }
            self.maybe_free(ino);
        }
    }

    /// Reads up to `size` bytes at `off` of the current contents.
    pub(crate) fn read(&self, ino: u64, fh: u64, off: u64, size: u32) -> Result<Vec<u8>, Errno> {
        self.check_file(fh, ino)?;
        let d = self.node(ino)?.data.as_ref().ok_or(Errno::EISDIR)?;
        let end = d.size.min(off.saturating_add(u64::from(size)));
        if off >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - off) as usize];
        let mut got = 0;
        while got < buf.len() {
            match d.cur.read_at(&mut buf[got..], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn file(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        let n = self.inodes.get_mut(&ino).ok_or(Errno::EIO)?;
        if n.data.is_none() {
            return Err(Errno::EISDIR);
        }
        Ok(n)
    }

    /// Writes `data` at `off`: visible at once, volatile until an fsync.
    pub(crate) fn write(
        &mut self,
        ino: u64,
        fh: u64,
        off: u64,
        data: Vec<u8>,
    ) -> Result<u32, Errno> {
        self.check_file(fh, ino)?;
        let len = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        let end = off.checked_add(u64::from(len)).ok_or(Errno::EFBIG)?;
        let seq = self.seq();
        let n = self.file(ino)?;
        let Some(d) = n.data.as_mut() else {
            return Err(Errno::EISDIR);
        };
        d.cur.write_all_at(&data, off).map_err(errno)?;
        d.size = d.size.max(end);
        if !data.is_empty() {
            d.pending.push(DataOp::Write { seq, off, data });
        }
        let now = SystemTime::now();
        n.mtime = now;
        n.ctime = now;
        Ok(len)
    }

    /// Setattr; a size change is a volatile data operation like a write.
    pub(crate) fn setattr(
        &mut self,
        ino: u64,
        fh: Option<u64>,
        set: SetAttr,
    ) -> Result<FileAttr, Errno> {
        if let Some(fh) = fh {
            if self.node(ino)?.kind == Kind::File {
                self.check_file(fh, ino)?;
            }
        }
        let seq = self.seq();
        let n = self.node_mut(ino)?;
        let now = SystemTime::now();
        if let Some(len) = set.size {
            let Some(d) = n.data.as_mut() else {
                return Err(Errno::EISDIR);
            };
            d.cur.set_len(len).map_err(errno)?;
            d.size = len;
            d.pending.push(DataOp::SetLen { seq, len });
            n.mtime = now;
        }
        if let Some(mode) = set.mode {
            n.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = set.uid {
            n.uid = uid;
        }
        if let Some(gid) = set.gid {
            n.gid = gid;
        }
        if let Some(t) = set.atime {
            n.atime = time(t);
        }
        if let Some(t) = set.mtime {
            n.mtime = time(t);
        }
        n.ctime = set.ctime.unwrap_or(now);
        self.attr(ino)
    }

    /// fallocate(2) with the caller's mode, volatile like a write.
    pub(crate) fn fallocate(
        &mut self,
        ino: u64,
        fh: u64,
        off: u64,
        len: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        self.check_file(fh, ino)?;
        let seq = self.seq();
        let n = self.file(ino)?;
        let Some(d) = n.data.as_mut() else {
            return Err(Errno::EISDIR);
        };
        fallocate(&d.cur, off, len, mode).map_err(errno)?;
        d.size = d.cur.metadata().map_err(errno)?.len();
        d.pending.push(DataOp::Allocate {
            seq,
            off,
            len,
            mode,
        });
        let now = SystemTime::now();
        n.mtime = now;
        n.ctime = now;
        Ok(())
    }

    /// fsync or fdatasync of a file: all its data and size become durable
    /// (not its name).
    pub(crate) fn fsync(&mut self, ino: u64, fh: u64) -> Result<(), Errno> {
        self.check_file(fh, ino)?;
        self.make_durable(ino)
    }

    fn make_durable(&mut self, ino: u64) -> Result<(), Errno> {
        let path = self.dur_path(ino);
        let Some(d) = self.inodes.get_mut(&ino).and_then(|n| n.data.as_mut()) else {
            return Ok(());
        };
        if d.pending.is_empty() {
            return Ok(());
        }
        let f = open_dur(&path).map_err(errno)?;
        for op in &d.pending {
            op.apply(&f, None).map_err(errno)?;
        }
        d.pending.clear();
        Ok(())
    }

    /// A writeback error: the file's unsynced data operations are dropped
    /// from the pending list without being applied to its durable copy. The
    /// current contents keep them (what readers see), the durable contents
    /// never get them.
    pub(crate) fn forget_unsynced(&mut self, ino: u64) {
        if let Some(d) = self.inodes.get_mut(&ino).and_then(|n| n.data.as_mut()) {
            d.diverged |= !d.pending.is_empty();
            d.pending.clear();
        }
    }

    /// fsync of a directory: commits every pending namespace operation up to
    /// and including the last one that touches it.
    pub(crate) fn fsyncdir(&mut self, ino: u64, fh: u64) -> Result<(), Errno> {
        self.check_dir(fh, ino)?;
        if let Some(last) = self.journal.iter().rposition(|op| op.dirs.contains(&ino)) {
            self.commit(last + 1);
        }
        Ok(())
    }

    /// Commits the first `n` pending namespace operations.
    fn commit(&mut self, n: usize) {
        let ops: Vec<NsOp> = self.journal.drain(..n).collect();
        for op in ops {
            for e in op.edits {
                self.apply_edit(e);
            }
            for ino in op.inos {
                if let Some(n) = self.inodes.get_mut(&ino) {
                    n.journal_refs = n.journal_refs.saturating_sub(1);
                }
                self.maybe_free(ino);
            }
        }
    }

    fn apply_edit(&mut self, e: Edit) {
        match e {
            Edit::Add { dir, name, ino } => {
                self.dur_dirs.entry(dir).or_default().insert(name, ino);
                if let Some(n) = self.inodes.get_mut(&ino) {
                    n.dur_linked = true;
                    if n.kind == Kind::Dir {
                        self.dur_dirs.entry(ino).or_default();
                    }
                }
            }
            Edit::Remove {
                dir,
                name,
                ino,
                dispose,
            } => {
                if let Some(entries) = self.dur_dirs.get_mut(&dir) {
                    if entries.get(&name) == Some(&ino) {
                        entries.remove(&name);
                    }
                }
                if dispose {
                    if let Some(n) = self.inodes.get_mut(&ino) {
                        n.dur_linked = false;
                    }
                    self.dur_dirs.remove(&ino);
                }
            }
        }
    }

    /// Frees an inode nothing refers to any more: no current or durable
    /// name, no pending namespace operation, no open handle.
    fn maybe_free(&mut self, ino: u64) {
        let Some(n) = self.inodes.get(&ino) else {
            return;
        };
        if ino == ROOT || n.linked || n.dur_linked || n.journal_refs > 0 || n.open > 0 {
            return;
        }
        self.free(ino);
    }

    fn free(&mut self, ino: u64) -> Option<Inode> {
        let n = self.inodes.remove(&ino)?;
        self.dur_dirs.remove(&ino);
        if n.data.is_some() {
            for p in [self.cur_path(ino), self.dur_path(ino)] {
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!("faultfs: cannot remove {}: {e}", p.display()),
                }
            }
        }
        Some(n)
    }

    /// Opens a directory.
    pub(crate) fn opendir(&mut self, ino: u64) -> Result<u64, Errno> {
        self.dir(ino)?;
        Ok(self.new_handle(Handle::Dir { ino, entries: None }))
    }

    fn snapshot(&self, ino: u64) -> Vec<DirEntry> {
        let Some(d) = self.inodes.get(&ino) else {
            return Vec::new();
        };
        let mut v = vec![
            DirEntry {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino: d.parent,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for (name, c) in &d.children {
            if let Some(n) = self.inodes.get(c) {
                v.push(DirEntry {
                    ino: *c,
                    kind: file_type(n.kind),
                    name: name.clone(),
                });
            }
        }
        v
    }

    /// Entries from position `offset` on (at most a chunk); the listing is
    /// taken at the first readdir of a handle (and again on a rewind).
    pub(crate) fn readdir(
        &mut self,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> Result<Vec<DirEntry>, Errno> {
        self.check_dir(fh, ino)?;
        let fresh = match self.handles.get(&fh) {
            Some(Handle::Dir { entries, .. }) => offset == 0 || entries.is_none(),
            _ => return Err(Errno::EIO),
        };
        if fresh {
            let snap = self.snapshot(ino);
            if let Some(Handle::Dir { entries, .. }) = self.handles.get_mut(&fh) {
                *entries = Some(snap);
            }
        }
        match self.handles.get(&fh) {
            Some(Handle::Dir {
                entries: Some(e), ..
            }) => {
                let from = usize::try_from(offset).unwrap_or(usize::MAX).min(e.len());
                let to = from.saturating_add(READDIR_CHUNK).min(e.len());
                Ok(e[from..to].to_vec())
            }
            _ => Err(Errno::EIO),
        }
    }

    /// Releases a directory handle.
    pub(crate) fn releasedir(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    /// Unsynced data writes and their bytes, and pending size changes.
    pub(crate) fn unsynced(&self) -> (u64, u64, u64) {
        let (mut writes, mut bytes, mut sizes) = (0, 0, 0);
        for n in self.inodes.values() {
            if let Some(d) = &n.data {
                for op in &d.pending {
                    match op {
                        DataOp::Write { data, .. } => {
                            writes += 1;
                            bytes += data.len() as u64;
                        }
                        _ => sizes += 1,
                    }
                }
            }
        }
        (writes, bytes, sizes)
    }

    /// Pending namespace operations.
    pub(crate) fn pending_namespace_ops(&self) -> u64 {
        self.journal.len() as u64
    }

    /// Makes everything durable (as sync(2) with a disk that honours it).
    pub(crate) fn sync_all(&mut self) -> Result<(), Errno> {
        self.commit(self.journal.len());
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in inos {
            self.make_durable(ino)?;
            // A file whose writeback failed has current contents its
            // durable copy never got: a sync(2) that works writes them.
            let (cur, dur) = (self.cur_path(ino), self.dur_path(ino));
            if let Some(d) = self.inodes.get_mut(&ino).and_then(|n| n.data.as_mut()) {
                if d.diverged {
                    std::fs::copy(&cur, &dur).map_err(errno)?;
                    d.diverged = false;
                }
            }
        }
        Ok(())
    }

    /// The power cut: the current state becomes the durable state, plus the
    /// unsynced data operations `how` lets through.
    pub(crate) fn cut(&mut self, how: Cut) -> CutReport {
        let mut r = CutReport {
            namespace_ops_dropped: self.journal.len() as u64,
            ..CutReport::default()
        };
        // Namespace: back to the durable tree; every handle is gone.
        self.journal.clear();
        self.handles.clear();
        for n in self.inodes.values_mut() {
            n.journal_refs = 0;
            n.open = 0;
            n.linked = false;
            n.children.clear();
        }
        for (dir, entries) in &self.dur_dirs {
            for (name, ino) in entries {
                if let Some(n) = self.inodes.get_mut(ino) {
                    n.linked = true;
                    n.parent = *dir;
                    n.name = name.clone();
                }
                if let Some(d) = self.inodes.get_mut(dir) {
                    d.children.insert(name.clone(), *ino);
                }
            }
        }
        if let Some(root) = self.inodes.get_mut(&ROOT) {
            root.linked = true;
        }
        // Inodes without a durable name are orphans: their data is freed.
        let orphans: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(ino, n)| **ino != ROOT && !n.dur_linked)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in orphans {
            if let Some(n) = self.free(ino) {
                r.orphans_freed += 1;
                if let Some(d) = n.data {
                    for op in &d.pending {
                        r.count(op_size(op), Keep::Nothing);
                    }
                }
            }
        }
        // Data of the survivors: decide, in global order, what gets through.
        let mut ops: Vec<PendingRef> = Vec::new();
        for (ino, n) in &self.inodes {
            if let Some(d) = &n.data {
                for op in &d.pending {
                    let w = match op {
                        DataOp::Write { off, data, .. } => Some((*off, data.len() as u64)),
                        _ => None,
                    };
                    ops.push(PendingRef {
                        seq: op.seq(),
                        ino: *ino,
                        write: w,
                    });
                }
            }
        }
        ops.sort_unstable_by_key(|o| o.seq);
        let mut keep: HashMap<u64, Keep> = HashMap::new();
        match how {
            Cut::All => {}
            Cut::RandomSubset { seed, keep: frac } => {
                let mut rng = Rng(seed);
                for o in &ops {
                    if rng.unit() < frac {
                        keep.insert(o.seq, Keep::Whole);
                    }
                }
            }
            Cut::Tear { seed } => {
                let mut rng = Rng(seed);
                // Writes with a sector boundary strictly inside them.
                let candidates: Vec<(&PendingRef, u64, u64)> = ops
                    .iter()
                    .filter_map(|o| o.write.map(|(off, len)| (o, off, len)))
                    .filter(|(_, off, len)| (off / SECTOR + 1) * SECTOR < off + len)
                    .collect();
                if !candidates.is_empty() {
                    let (o, off, len) = candidates[rng.below(candidates.len() as u64) as usize];
                    let first = (off / SECTOR + 1) * SECTOR;
                    let last = (off + len - 1) / SECTOR * SECTOR;
                    let boundary = first + SECTOR * rng.below((last - first) / SECTOR + 1);
                    keep.insert(o.seq, Keep::Prefix(boundary - off));
                    r.torn = Some(Torn {
                        path: self.path_of(o.ino),
                        offset: off,
                        len,
                        kept: boundary - off,
                    });
                }
            }
        }
        let inos: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(_, n)| {
                n.data
                    .as_ref()
                    .is_some_and(|d| !d.pending.is_empty() || d.diverged)
            })
            .map(|(ino, _)| *ino)
            .collect();
        for ino in inos {
            let (cur_path, dur_path) = (self.cur_path(ino), self.dur_path(ino));
            let Some(d) = self.inodes.get_mut(&ino).and_then(|n| n.data.as_mut()) else {
                continue;
            };
            let pending = std::mem::take(&mut d.pending);
            d.diverged = false;
            if let Err(e) = restore(d, &pending, &keep, &cur_path, &dur_path, &mut r) {
                tracing::error!("faultfs: cut of inode {ino}: {e}");
                r.backing_errors += 1;
            }
        }
        r
    }
}

fn op_size(op: &DataOp) -> Option<u64> {
    match op {
        DataOp::Write { data, .. } => Some(data.len() as u64),
        _ => None,
    }
}

impl CutReport {
    /// Counts one pending data operation (`Some(bytes)` for a write) with
    /// what the cut kept of it.
    fn count(&mut self, write: Option<u64>, keep: Keep) {
        match (write, keep) {
            (Some(len), Keep::Nothing) => {
                self.writes_dropped += 1;
                self.bytes_dropped += len;
            }
            (Some(len), Keep::Whole) => {
                self.writes_kept += 1;
                self.bytes_kept += len;
            }
            (Some(len), Keep::Prefix(p)) => {
                self.writes_dropped += 1;
                self.bytes_kept += p;
                self.bytes_dropped += len - p;
            }
            (None, Keep::Nothing) => self.size_changes_dropped += 1,
            (None, _) => self.size_changes_kept += 1,
        }
    }
}

/// Applies the kept part of `pending` to the durable file, then makes the
/// current file a copy of it.
fn restore(
    d: &mut FileData,
    pending: &[DataOp],
    keep: &HashMap<u64, Keep>,
    cur_path: &Path,
    dur_path: &Path,
    r: &mut CutReport,
) -> io::Result<()> {
    let mut dur: Option<File> = None;
    for op in pending {
        let k = keep.get(&op.seq()).copied().unwrap_or(Keep::Nothing);
        r.count(op_size(op), k);
        let prefix = match k {
            Keep::Nothing => continue,
            Keep::Whole => None,
            Keep::Prefix(p) => Some(p),
        };
        if dur.is_none() {
            dur = Some(open_dur(dur_path)?);
        }
        if let Some(f) = &dur {
            op.apply(f, prefix)?;
        }
    }
    drop(dur);
    match std::fs::metadata(dur_path) {
        Ok(_) => {
            std::fs::copy(dur_path, cur_path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => d.cur.set_len(0)?,
        Err(e) => return Err(e),
    }
    d.size = d.cur.metadata()?.len();
    Ok(())
}

/// The model without FUSE: these run where mounting is not possible.
/// A file's durable copy, opened for writing (made when absent).
fn open_dur(path: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Owner = Owner { uid: 0, gid: 0 };

    fn model() -> (tempfile::TempDir, Model) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cur")).unwrap();
        std::fs::create_dir(dir.path().join("dur")).unwrap();
        let m = Model::new(dir.path());
        (dir, m)
    }

    fn mkdir(m: &mut Model, parent: u64, name: &str) -> u64 {
        m.create(parent, OsStr::new(name), Kind::Dir, 0o755, ME, false)
            .unwrap()
            .0
            .ino
            .0
    }

    /// A created file, open: (ino, fh).
    fn file(m: &mut Model, parent: u64, name: &str) -> (u64, u64) {
        let (attr, fh) = m
            .create(parent, OsStr::new(name), Kind::File, 0o644, ME, true)
            .unwrap();
        (attr.ino.0, fh.unwrap())
    }

    fn fsyncdir(m: &mut Model, dir: u64) {
        let fh = m.opendir(dir).unwrap();
        m.fsyncdir(dir, fh).unwrap();
        m.releasedir(fh);
    }

    fn names(m: &Model, dir: u64) -> Vec<String> {
        m.inodes[&dir]
            .children
            .keys()
            .map(|k| k.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn fsyncdir_commits_the_journal_up_to_the_last_op_touching_the_dir() {
        let (_d, mut m) = model();
        let x = mkdir(&mut m, ROOT, "x");
        let y = mkdir(&mut m, ROOT, "y");
        fsyncdir(&mut m, ROOT);
        file(&mut m, x, "before");
        file(&mut m, y, "b");
        file(&mut m, x, "after");
        fsyncdir(&mut m, y);
        assert_eq!(m.pending_namespace_ops(), 1);
        m.cut(Cut::All);
        assert_eq!(names(&m, x), ["before"]);
        assert_eq!(names(&m, y), ["b"]);
    }

    #[test]
    fn a_cut_brings_back_the_durable_names_and_frees_orphans() {
        let (_d, mut m) = model();
        let (a, fh) = file(&mut m, ROOT, "a.tmp");
        fsyncdir(&mut m, ROOT);
        m.write(a, fh, 0, b"synced".to_vec()).unwrap();
        m.fsync(a, fh).unwrap();
        m.rename(ROOT, OsStr::new("a.tmp"), ROOT, OsStr::new("a.txt"), false)
            .unwrap();
        let (b, _) = file(&mut m, ROOT, "orphan");
        let r = m.cut(Cut::All);
        assert_eq!(names(&m, ROOT), ["a.tmp"]);
        assert_eq!(r.orphans_freed, 1);
        assert!(!m.inodes.contains_key(&b));
        let fh = m.open(a).unwrap();
        assert_eq!(m.read(a, fh, 0, 100).unwrap(), b"synced");
    }

    #[test]
    fn a_rename_between_dirs_touches_both() {
        let (_d, mut m) = model();
        let from = mkdir(&mut m, ROOT, "from");
        let to = mkdir(&mut m, ROOT, "to");
        file(&mut m, from, "f");
        fsyncdir(&mut m, from);
        m.rename(from, OsStr::new("f"), to, OsStr::new("f"), false)
            .unwrap();
        fsyncdir(&mut m, from);
        m.cut(Cut::All);
        assert!(names(&m, from).is_empty());
        assert_eq!(names(&m, to), ["f"]);
    }

    #[test]
    fn tear_keeps_a_prefix_ending_on_a_sector_boundary() {
        for seed in 0..20 {
            let (_d, mut m) = model();
            let (f, fh) = file(&mut m, ROOT, "f");
            fsyncdir(&mut m, ROOT);
            m.write(f, fh, 0, vec![1; 300]).unwrap();
            m.write(f, fh, 300, vec![2; 3000]).unwrap();
            let r = m.cut(Cut::Tear { seed });
            let t = r.torn.unwrap();
            // Only the second write spans a boundary.
            assert_eq!((t.offset, t.len), (300, 3000));
            assert_eq!((t.offset + t.kept) % SECTOR, 0);
            assert!(t.kept > 0 && t.kept < t.len);
            let fh = m.open(f).unwrap();
            let back = m.read(f, fh, 0, 4096).unwrap();
            assert_eq!(back.len() as u64, 300 + t.kept);
            assert!(back[..300].iter().all(|b| *b == 0));
            assert!(back[300..].iter().all(|b| *b == 2));
        }
    }

    #[test]
    fn random_subset_is_deterministic_by_seed() {
        let run = |seed| {
            let (_d, mut m) = model();
            let (f, fh) = file(&mut m, ROOT, "f");
            fsyncdir(&mut m, ROOT);
            for i in 0..100u64 {
                m.write(f, fh, i * 10, vec![i as u8 + 1; 10]).unwrap();
            }
            let r = m.cut(Cut::RandomSubset { seed, keep: 0.3 });
            let fh = m.open(f).unwrap();
            (r.writes_kept, m.read(f, fh, 0, 1000).unwrap())
        };
        let (kept, data) = run(3);
        assert!((10..=50).contains(&kept), "{kept}");
        assert_eq!(run(3), (kept, data));
    }

    #[test]
    fn unlinked_inodes_live_until_their_last_reference_goes() {
        let (_d, mut m) = model();
        let (f, fh) = file(&mut m, ROOT, "f");
        m.remove(ROOT, OsStr::new("f"), false).unwrap();
        fsyncdir(&mut m, ROOT);
        // No name anywhere, no journal entry, but still open.
        assert!(m.inodes.contains_key(&f));
        m.write(f, fh, 0, b"x".to_vec()).unwrap();
        m.release(fh);
        assert!(!m.inodes.contains_key(&f));
        assert!(!m.cur_path(f).exists());
    }
}
