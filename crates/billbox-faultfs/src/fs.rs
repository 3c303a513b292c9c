//! The FUSE side: fuser's `Filesystem` over the [`Model`], and the machinery
//! that fails, delays and holds requests.
//!
//! fuser runs the handlers on its one session thread. A handler never
//! blocks: it packs the request into a [`Pending`] (what to apply, and the
//! fuser reply object to answer with), then under the state lock either
//! applies it at once, answers it with a fault's errno, puts it on the timer
//! list ([`Action::Delay`]) or keeps it in the held list (a freeze). Answers
//! are sent after the lock is let go.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::control::{Action, Fault, FaultId, FrozenAt, Op, Space};
use crate::model::{Kind, Model, Owner, SetAttr};

/// Entries and attributes are never cached by the kernel: after a cut it
/// must ask again rather than serve names or sizes the cut dropped.
const TTL: Duration = Duration::ZERO;

/// A request not yet applied: apply it to the model (the answer is sent
/// later, outside the lock), or answer it with an error without applying it.
pub(crate) trait Pending: Send {
    /// Applies the request; the answer still has to be sent.
    fn apply(self: Box<Self>, model: &mut Model) -> Box<dyn Answer>;
    /// Answers with `e`, applying nothing.
    fn fail(self: Box<Self>, e: Errno);
}

/// An applied request's answer, not yet sent.
pub(crate) trait Answer: Send {
    /// Sends the answer.
    fn send(self: Box<Self>);
    /// Sends `e` instead (the request stays applied).
    fn fail(self: Box<Self>, e: Errno);
}

struct Job<R, A, P> {
    apply: A,
    reply: P,
    _result: PhantomData<fn() -> R>,
}

impl<R, A, P> Pending for Job<R, A, P>
where
    R: Send + 'static,
    A: FnOnce(&mut Model) -> Result<R, Errno> + Send + 'static,
    P: FnOnce(Result<R, Errno>) + Send + 'static,
{
    fn apply(self: Box<Self>, model: &mut Model) -> Box<dyn Answer> {
        let result = (self.apply)(model);
        Box::new(Done {
            result,
            reply: self.reply,
        })
    }

    fn fail(self: Box<Self>, e: Errno) {
        (self.reply)(Err(e));
    }
}

struct Done<R, P> {
    result: Result<R, Errno>,
    reply: P,
}

impl<R, P> Answer for Done<R, P>
where
    R: Send + 'static,
    P: FnOnce(Result<R, Errno>) + Send + 'static,
{
    fn send(self: Box<Self>) {
        (self.reply)(self.result);
    }

    fn fail(self: Box<Self>, e: Errno) {
        (self.reply)(Err(e));
    }
}

fn job<R, A, P>(apply: A, reply: P) -> Box<dyn Pending>
where
    R: Send + 'static,
    A: FnOnce(&mut Model) -> Result<R, Errno> + Send + 'static,
    P: FnOnce(Result<R, Errno>) + Send + 'static,
{
    Box::new(Job {
        apply,
        reply,
        _result: PhantomData,
    })
}

/// A request held by a freeze.
pub(crate) enum Held {
    /// Held before being applied (a freeze, [`Action::FreezeBefore`]).
    Unapplied(Box<dyn Pending>),
    /// Applied, its answer held ([`Action::FreezeAfter`]).
    Applied(Box<dyn Answer>),
}

impl Held {
    pub(crate) fn fail(self, e: Errno) {
        match self {
            Held::Unapplied(j) => j.fail(e),
            Held::Applied(a) => a.fail(e),
        }
    }
}

/// A request waiting on an [`Action::Delay`].
pub(crate) struct Delayed {
    due: Instant,
    pub(crate) job: Box<dyn Pending>,
}

/// An added fault and how many requests it matched so far.
pub(crate) struct FaultSlot {
    pub(crate) id: FaultId,
    pub(crate) fault: Fault,
    pub(crate) seen: u64,
}

/// Everything behind the one lock.
pub(crate) struct State {
    pub(crate) model: Model,
    pub(crate) faults: Vec<FaultSlot>,
    pub(crate) next_fault: u64,
    pub(crate) faults_fired: u64,
    pub(crate) space: Option<Space>,
    pub(crate) frozen: Option<FrozenAt>,
    pub(crate) held: Vec<Held>,
    pub(crate) delayed: Vec<Delayed>,
    pub(crate) requests: BTreeMap<&'static str, u64>,
    pub(crate) cuts: u64,
    /// Set when the mount goes away: nothing is held any more.
    pub(crate) shutdown: bool,
}

/// The state and its condition variables, shared by the session thread, the
/// timer thread and every [`crate::Control`].
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Freezes, cuts and thaws.
    pub(crate) changed: Condvar,
    /// New delayed requests, shutdown.
    pub(crate) timer: Condvar,
}

impl Shared {
    pub(crate) fn new(model: Model) -> Shared {
        Shared {
            state: Mutex::new(State {
                model,
                faults: Vec::new(),
                next_fault: 1,
                faults_fired: 0,
                space: None,
                frozen: None,
                held: Vec::new(),
                delayed: Vec::new(),
                requests: BTreeMap::new(),
                cuts: 0,
                shutdown: false,
            }),
            changed: Condvar::new(),
            timer: Condvar::new(),
        }
    }

    /// The state (a panic elsewhere does not make it unusable).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the timer thread and answers everything held or delayed with
    /// EIO; from then on nothing is held.
    pub(crate) fn shut_down(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        st.frozen = None;
        let waiting = st.take_waiting();
        drop(st);
        self.timer.notify_all();
        self.changed.notify_all();
        for h in waiting {
            h.fail(Errno::EIO);
        }
    }
}

/// Runs delayed requests when they are due (or holds them if frozen by
/// then), until shutdown.
pub(crate) fn timer_loop(shared: Arc<Shared>) {
    let mut st = shared.lock();
    loop {
        if st.shutdown {
            return;
        }
        let now = Instant::now();
        if let Some(i) = st.delayed.iter().position(|d| d.due <= now) {
            // In arrival order (a freeze holds them in that order too).
            let d = st.delayed.remove(i);
            if st.frozen.is_some() {
                st.held.push(Held::Unapplied(d.job));
                continue;
            }
            let answer = d.job.apply(&mut st.model);
            drop(st);
            answer.send();
            st = shared.lock();
            continue;
        }
        let next = st.delayed.iter().map(|d| d.due).min();
        st = match next {
            None => shared.timer.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(due) => {
                shared
                    .timer
                    .wait_timeout(st, due.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

/// What a request is about, for matching fault paths.
enum Target {
    Ino(u64),
    /// An entry; `true`: it is (or is to be) a directory.
    Entry(u64, OsString, bool),
    Rename(u64, OsString, u64, OsString),
}

impl State {
    /// Takes every held and delayed request, to be failed (a cut, the
    /// mount going away).
    pub(crate) fn take_waiting(&mut self) -> Vec<Held> {
        let mut out = std::mem::take(&mut self.held);
        let delayed = std::mem::take(&mut self.delayed);
        out.extend(delayed.into_iter().map(|d| Held::Unapplied(d.job)));
        out
    }

    fn count(&mut self, name: &'static str) {
        *self.requests.entry(name).or_insert(0) += 1;
    }

    /// The paths a fault's substring is matched against: a directory's
    /// path also with a trailing `/`, so that `"spool/"` matches the `spool`
    /// directory itself (its fsync, its mkdir, its rename) as well as
    /// everything in it.
    fn paths(&self, target: &Target) -> Vec<String> {
        let m = &self.model;
        let (plain, dir) = match target {
            Target::Ino(ino) => (vec![m.path_of(*ino)], m.is_dir(*ino)),
            Target::Entry(p, n, dir) => (vec![m.entry_path(*p, n)], *dir),
            Target::Rename(p, n, np, nn) => (
                vec![m.entry_path(*p, n), m.entry_path(*np, nn)],
                m.child(*p, n).is_some_and(|c| m.is_dir(c)),
            ),
        };
        let mut all = plain.clone();
        if dir {
            all.extend(
                plain
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| format!("{p}/")),
            );
        }
        all
    }

    /// Counts the request against every matching fault; the first (oldest)
    /// fault that fires, with the request's path.
    fn fire(&mut self, op: Op, target: &Target) -> Option<(FaultId, Action, String)> {
        let paths = self.paths(target);
        let mut fired = None;
        for slot in &mut self.faults {
            if !slot.fault.op.matches(op) {
                continue;
            }
            let Some(path) = paths.iter().find(|p| p.contains(slot.fault.path.as_str())) else {
                continue;
            };
            slot.seen += 1;
            if fired.is_none() && slot.fault.fires(slot.seen) {
                let path = path.strip_suffix('/').unwrap_or(path).to_string();
                fired = Some((slot.id, slot.fault.action, path));
            }
        }
        if fired.is_some() {
            self.faults_fired += 1;
        }
        fired
    }
}

/// fuser's `Filesystem`.
pub(crate) struct FaultFsImpl {
    pub(crate) shared: Arc<Shared>,
}

fn entry_reply(reply: ReplyEntry) -> impl FnOnce(Result<fuser::FileAttr, Errno>) + Send + 'static {
    move |r| match r {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty_reply(reply: ReplyEmpty) -> impl FnOnce(Result<(), Errno>) + Send + 'static {
    move |r| match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl FaultFsImpl {
    /// mknod (a regular file) or mkdir: a new entry `name` in `parent`.
    fn make_entry(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: Kind,
        mode: u32,
        reply: ReplyEntry,
    ) {
        let (parent, name, owner) = (parent.0, name.to_os_string(), owner(req));
        let (request, op) = match kind {
            Kind::Dir => ("mkdir", Op::Mkdir),
            _ => ("mknod", Op::Create),
        };
        self.submit(
            request,
            Some(op),
            Target::Entry(parent, name.clone(), kind == Kind::Dir),
            job(
                move |m| {
                    m.create(parent, &name, kind, mode, owner, false)
                        .map(|(attr, _)| attr)
                },
                entry_reply(reply),
            ),
        );
    }
}

fn owner(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
}

impl FaultFsImpl {
    /// Applies, fails, delays or holds one request (see the module docs).
    /// `op: None`: no fault matches it (release), but a freeze holds it.
    fn submit(&self, name: &'static str, op: Option<Op>, target: Target, job: Box<dyn Pending>) {
        let mut st = self.shared.lock();
        st.count(name);
        if st.shutdown {
            drop(st);
            job.fail(Errno::EIO);
            return;
        }
        if st.frozen.is_some() {
            st.held.push(Held::Unapplied(job));
            return;
        }
        let fired = match op {
            Some(op) if !st.faults.is_empty() => st.fire(op, &target).map(|f| (op, f)),
            _ => None,
        };
        let Some((op, (id, action, path))) = fired else {
            let answer = job.apply(&mut st.model);
            drop(st);
            answer.send();
            return;
        };
        tracing::debug!("faultfs: fault {id:?} fires on {name} {path}: {action:?}");
        match action {
            Action::Error(code) => {
                drop(st);
                job.fail(Errno::from_i32(code));
            }
            Action::ErrorLosingWrites(code) => {
                if let (Op::Fsync, Target::Ino(ino)) = (op, &target) {
                    st.model.forget_unsynced(*ino);
                }
                drop(st);
                job.fail(Errno::from_i32(code));
            }
            Action::Delay(d) => {
                st.delayed.push(Delayed {
                    due: Instant::now() + d,
                    job,
                });
                drop(st);
                self.shared.timer.notify_all();
            }
            Action::FreezeBefore => {
                st.frozen = Some(FrozenAt {
                    fault: Some(id),
                    op: Some(op),
                    path,
                    applied: false,
                });
                st.held.push(Held::Unapplied(job));
                drop(st);
                self.shared.changed.notify_all();
            }
            Action::FreezeAfter => {
                let answer = job.apply(&mut st.model);
                st.frozen = Some(FrozenAt {
                    fault: Some(id),
                    op: Some(op),
                    path,
                    applied: true,
                });
                st.held.push(Held::Applied(answer));
                drop(st);
                self.shared.changed.notify_all();
            }
        }
    }

    /// Answers a request that is never held (it only looks).
    fn query<R>(&self, name: &'static str, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.shared.lock();
        st.count(name);
        f(&mut st)
    }
}

impl Filesystem for FaultFsImpl {
    fn destroy(&mut self) {
        self.shared.shut_down();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.query("lookup", |st| st.model.lookup(parent.0, name));
        entry_reply(reply)(r);
    }

    /// Inode lifetimes do not depend on the kernel's lookup counts (inode
    /// numbers are never reused), so forget has nothing to do.
    fn forget(&self, _req: &Request, _ino: INodeNo, _nlookup: u64) {
        self.query("forget", |_| ());
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.query("getattr", |st| st.model.getattr(ino.0, fh.map(|f| f.0))) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            ctime,
        };
        let ino = ino.0;
        self.submit(
            "setattr",
            Some(Op::SetAttr),
            Target::Ino(ino),
            job(
                move |m| m.setattr(ino, fh.map(|f| f.0), set),
                move |r| match r {
                    Ok(attr) => reply.attr(&TTL, &attr),
                    Err(e) => reply.error(e),
                },
            ),
        );
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        self.query("readlink", |_| ());
        reply.error(Errno::ENOSYS);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            self.query("mknod", |_| ());
            reply.error(Errno::ENOSYS);
            return;
        }
        self.make_entry(req, parent, name, Kind::File, mode, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.make_entry(req, parent, name, Kind::Dir, mode, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (parent, name) = (parent.0, name.to_os_string());
        self.submit(
            "unlink",
            Some(Op::Unlink),
            Target::Entry(parent, name.clone(), false),
            job(move |m| m.remove(parent, &name, false), empty_reply(reply)),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (parent, name) = (parent.0, name.to_os_string());
        self.submit(
            "rmdir",
            Some(Op::Rmdir),
            Target::Entry(parent, name.clone(), true),
            job(move |m| m.remove(parent, &name, true), empty_reply(reply)),
        );
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        self.query("symlink", |_| ());
        reply.error(Errno::ENOSYS);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            self.query("rename", |_| ());
            reply.error(Errno::EINVAL);
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let (p, n, np, nn) = (
            parent.0,
            name.to_os_string(),
            newparent.0,
            newname.to_os_string(),
        );
        self.submit(
            "rename",
            Some(Op::Rename),
            Target::Rename(p, n.clone(), np, nn.clone()),
            job(
                move |m| m.rename(p, &n, np, &nn, noreplace),
                empty_reply(reply),
            ),
        );
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.query("link", |_| ());
        reply.error(Errno::ENOSYS);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let ino = ino.0;
        self.submit(
            "open",
            Some(Op::Open),
            Target::Ino(ino),
            job(
                move |m| m.open(ino),
                move |r| match r {
                    Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                    Err(e) => reply.error(e),
                },
            ),
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (ino, fh) = (ino.0, fh.0);
        self.submit(
            "read",
            Some(Op::Read),
            Target::Ino(ino),
            job(
                move |m| m.read(ino, fh, offset, size),
                move |r| match r {
                    Ok(data) => reply.data(&data),
                    Err(e) => reply.error(e),
                },
            ),
        );
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (ino, fh, data) = (ino.0, fh.0, data.to_vec());
        self.submit(
            "write",
            Some(Op::Write),
            Target::Ino(ino),
            job(
                move |m| m.write(ino, fh, offset, data),
                move |r| match r {
                    Ok(n) => reply.written(n),
                    Err(e) => reply.error(e),
                },
            ),
        );
    }

    /// Answered even while frozen (like the queries): close(2) waits for it,
    /// it makes nothing durable, and answering it lets a killed process that
    /// is not blocked elsewhere on the mount exit during a freeze.
    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        empty_reply(reply)(self.query("flush", |st| st.model.flush(ino.0, fh.0)));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fh = fh.0;
        self.submit(
            "release",
            None,
            Target::Ino(ino.0),
            job(
                move |m| {
                    m.release(fh);
                    Ok(())
                },
                empty_reply(reply),
            ),
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let (ino, fh) = (ino.0, fh.0);
        self.submit(
            if datasync { "fdatasync" } else { "fsync" },
            Some(Op::Fsync),
            Target::Ino(ino),
            job(move |m| m.fsync(ino, fh), empty_reply(reply)),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.query("opendir", |st| st.model.opendir(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.query("readdir", |st| st.model.readdir(ino.0, fh.0, offset)) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    if reply.add(INodeNo(e.ino), offset + i as u64 + 1, e.kind, &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.query("releasedir", |st| st.model.releasedir(fh.0));
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let (ino, fh) = (ino.0, fh.0);
        self.submit(
            "fsyncdir",
            Some(Op::FsyncDir),
            Target::Ino(ino),
            job(move |m| m.fsyncdir(ino, fh), empty_reply(reply)),
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (space, backing) =
            self.query("statfs", |st| (st.space, st.model.backing().to_path_buf()));
        const BSIZE: u64 = 4096;
        const FILES: u64 = 1 << 20;
        match space {
            Some(s) => reply.statfs(
                s.total / BSIZE,
                s.free / BSIZE,
                s.free / BSIZE,
                FILES,
                FILES,
                BSIZE as u32,
                255,
                BSIZE as u32,
            ),
            None => match nix::sys::statvfs::statvfs(&backing) {
                Ok(v) => reply.statfs(
                    v.blocks(),
                    v.blocks_free(),
                    v.blocks_available(),
                    v.files(),
                    v.files_free(),
                    u32::try_from(v.block_size()).unwrap_or(4096),
                    u32::try_from(v.name_max()).unwrap_or(255),
                    u32::try_from(v.fragment_size()).unwrap_or(4096),
                ),
                Err(e) => reply.error(Errno::from_i32(e as i32)),
            },
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        empty_reply(reply)(self.query("access", |st| st.model.access(ino.0)));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let (parent, name, owner) = (parent.0, name.to_os_string(), owner(req));
        self.submit(
            "create",
            Some(Op::Create),
            Target::Entry(parent, name.clone(), false),
            job(
                move |m| m.create(parent, &name, Kind::File, mode, owner, true),
                move |r| match r {
                    Ok((attr, Some(fh))) => reply.created(
                        &TTL,
                        &attr,
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::FOPEN_DIRECT_IO,
                    ),
                    Ok((_, None)) => reply.error(Errno::EIO),
                    Err(e) => reply.error(e),
                },
            ),
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let (ino, fh) = (ino.0, fh.0);
        self.submit(
            "fallocate",
            Some(Op::Fallocate),
            Target::Ino(ino),
            job(
                move |m| m.fallocate(ino, fh, offset, length, mode),
                empty_reply(reply),
            ),
        );
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        self.query("getxattr", |_| ());
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        self.query("listxattr", |_| ());
        reply.error(Errno::ENOSYS);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        // ENOSYS: the kernel stops asking and seeks by itself (SEEK_DATA and
        // SEEK_HOLE then treat the file as one data extent).
        self.query("lseek", |_| ());
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // ENOSYS: the kernel and std fall back to reads and writes, which
        // the model sees.
        self.query("copy_file_range", |_| ());
        reply.error(Errno::ENOSYS);
    }
}
