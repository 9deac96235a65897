//! Every file spawnd opens, creates, chowns or removes, usually as root,
//! goes through here, so that none of it follows a link someone else
//! controls, blocks on a FIFO, or acts on a file that another user swapped
//! in between a check and its use.
//!
//! The rules:
//!
//! - **Trusted paths** (checked when spawnd runs as root, `strict`): every
//!   directory on the way is owned by root or spawnd's user and cannot be
//!   written by anyone else, unless it is sticky (`/tmp`: others may add
//!   entries there but not rename or remove ours); every symbolic link on
//!   the way is owned by root or spawnd's user. The walk is made one
//!   component at a time with `openat(O_NOFOLLOW)`, each directory checked
//!   on its own descriptor, and the final operation is made relative to the
//!   last one: nothing is looked up twice by name.
//! - **Files read** (service files, `spawnd.yaml`, banners, the pid file) are
//!   checked to be regular before they are opened (a device's `open` can
//!   have effects), opened non-blocking and without a controlling terminal,
//!   checked again on the descriptor, and read up to a size cap. With
//!   `strict`, they are owned by root or spawnd's user and not writable by
//!   others, like sshd's StrictModes.
//! - **Files created** (the pid file) get an unpredictable temporary name,
//!   `O_CREAT | O_EXCL | O_NOFOLLOW`, and are renamed into place.
//! - **Sockets** (listening Unix sockets, the control socket): a path is
//!   removed only if it is a socket nobody answers on, and only the very
//!   socket spawnd bound (device and inode) is chowned or removed later,
//!   with `AT_SYMLINK_NOFOLLOW`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

/// As the kernel's own limit on links followed in one lookup.
const MAX_LINKS: usize = 40;

/// Why a file operation was not done.
#[derive(Debug)]
pub enum Error {
    /// A rule refused the path; the text says which, and how to fix it.
    Refused(String),
    /// The system could not do it (EACCES, EMFILE, EIO...).
    Io(io::Error),
}

impl From<Errno> for Error {
    fn from(errno: Errno) -> Error {
        Error::Io(io::Error::from(errno))
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Error {
        Error::Io(error)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Error::Refused(why) => f.write_str(why),
            Error::Io(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                f.write_str("too many levels of symbolic links (a symlink loop?)")
            }
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        match error {
            Error::Io(e) => e,
            refused => io::Error::new(io::ErrorKind::PermissionDenied, refused.to_string()),
        }
    }
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether spawnd runs as root, when the trust rules apply.
pub fn is_root() -> bool {
    euid() == 0
}

fn owner_trusted(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// What a file is, for messages.
pub fn kind_name(stat: &FileStat) -> &'static str {
    match file_type(stat) {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFCHR | SFlag::S_IFBLK => "a device node",
        _ => "not a regular file",
    }
}

/// A directory others cannot use to swap what spawnd finds in it.
fn check_dir(stat: &FileStat, shown: &Path) -> Result<(), Error> {
    if !owner_trusted(stat.st_uid) {
        return Err(Error::Refused(format!(
            "refused: {} is a directory owned by uid {} (must be root or uid {}), so its owner could swap what spawnd finds there",
            shown.display(),
            stat.st_uid,
            euid()
        )));
    }
    let writable_by_others = stat.st_mode & 0o022 != 0;
    let sticky = stat.st_mode & libc::S_ISVTX != 0;
    if writable_by_others && !sticky {
        return Err(Error::Refused(format!(
            "refused: {} is a directory others can write to (mode {:04o}), so they could swap what spawnd finds there (chmod go-w, or make it sticky)",
            shown.display(),
            stat.st_mode & 0o7777
        )));
    }
    Ok(())
}

/// A file's owner and mode, under the configuration-file rule.
fn check_file_owner(stat: &FileStat) -> Result<(), Error> {
    if !owner_trusted(stat.st_uid) {
        return Err(Error::Refused(format!(
            "refused: owned by uid {} (must be root or uid {}); --insecure-config overrides",
            stat.st_uid,
            euid()
        )));
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(Error::Refused(format!(
            "refused: mode {:04o} lets others write it (chmod go-w); --insecure-config overrides",
            stat.st_mode & 0o7777
        )));
    }
    Ok(())
}

fn open_dir_at(dir: impl AsFd, name: &OsStr, follow: bool) -> Result<OwnedFd, Error> {
    let mut flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    Ok(openat(dir, name, flags, Mode::empty())?)
}

/// Where an operation on a path takes place: its directory, open, and the
/// name in it.
pub struct Place {
    dir: OwnedFd,
    name: OsString,
    /// The path, for messages.
    shown: PathBuf,
    /// Only without `strict`: let the final open follow a symbolic link.
    follow_last: bool,
}

impl Place {
    /// Resolves `path` up to its last component. With `strict`, every
    /// directory and link on the way is checked (see the module comment),
    /// and a final symbolic link is followed only if `follow_last` (and is
    /// checked like the others). Without it, the path is looked up as the
    /// kernel would.
    pub fn of(path: &Path, strict: bool, follow_last: bool) -> Result<Place, Error> {
        if !strict {
            let name = path
                .file_name()
                .ok_or_else(|| Error::Refused(format!("{} names no file", path.display())))?;
            let parent = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let dir = open_dir_at(AT_FDCWD, parent.as_os_str(), true)?;
            return Ok(Place {
                dir,
                name: name.to_os_string(),
                shown: path.to_path_buf(),
                follow_last,
            });
        }
        let root = if path.is_absolute() { "/" } else { "." };
        let mut dir = open_dir_at(AT_FDCWD, OsStr::new(root), true)?;
        check_dir(&fstat(&dir)?, Path::new(root))?;
        let mut shown = PathBuf::from(root);
        // Components still to walk, the next one last.
        let mut pending: Vec<OsString> = Vec::new();
        push_components(&mut pending, path);
        let mut links = 0;
        while let Some(name) = pending.pop() {
            let last = pending.is_empty();
            if name == ".." {
                dir = open_dir_at(&dir, &name, false)?;
                shown.pop();
                check_dir(&fstat(&dir)?, &shown)?;
                if last {
                    break;
                }
                continue;
            }
            let here = shown.join(&name);
            let stat = match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => Some(stat),
                Err(Errno::ENOENT) if last => None,
                Err(e) => return Err(e.into()),
            };
            let is_link = stat
                .as_ref()
                .is_some_and(|s| file_type(s) == SFlag::S_IFLNK);
            if is_link && (!last || follow_last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::ELOOP.into());
                }
                let owner = stat.as_ref().map_or(0, |s| s.st_uid);
                if !owner_trusted(owner) {
                    return Err(Error::Refused(format!(
                        "refused: {} is a symbolic link owned by uid {owner} (must be root or uid {}); not followed",
                        here.display(),
                        euid()
                    )));
                }
                let target = readlinkat(&dir, name.as_os_str())?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    dir = open_dir_at(AT_FDCWD, OsStr::new("/"), true)?;
                    check_dir(&fstat(&dir)?, Path::new("/"))?;
                    shown = PathBuf::from("/");
                }
                push_components(&mut pending, target);
                continue;
            }
            if last {
                return Ok(Place {
                    dir,
                    name,
                    shown: here,
                    follow_last: false,
                });
            }
            let next = open_dir_at(&dir, &name, false)?;
            check_dir(&fstat(&next)?, &here)?;
            dir = next;
            shown = here;
        }
        Err(Error::Refused(format!("{} names no file", path.display())))
    }

    fn nofollow(&self) -> OFlag {
        if self.follow_last {
            OFlag::empty()
        } else {
            OFlag::O_NOFOLLOW
        }
    }

    fn stat_flags(&self) -> AtFlags {
        if self.follow_last {
            AtFlags::empty()
        } else {
            AtFlags::AT_SYMLINK_NOFOLLOW
        }
    }

    /// The entry's status, without following a final link (unless allowed).
    pub fn stat(&self) -> Result<Option<FileStat>, Error> {
        match fstatat(&self.dir, self.name.as_os_str(), self.stat_flags()) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the entry for reading; it must be a regular file of at most
    /// `max` bytes (and, with `strict`, owned and moded as configuration).
    fn open_regular(&self, strict: bool, max: u64) -> Result<File, Error> {
        // Refuse anything but a regular file before opening it.
        match self.stat()? {
            None => return Err(Errno::ENOENT.into()),
            Some(stat) if file_type(&stat) != SFlag::S_IFREG => {
                return Err(Error::Refused(format!(
                    "{}, not a regular file; not read",
                    kind_name(&stat)
                )))
            }
            Some(_) => {}
        }
        let flags = OFlag::O_RDONLY
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC
            | self.nofollow();
        let fd = match openat(&self.dir, self.name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) if !self.follow_last => {
                return Err(Error::Refused(
                    "a symbolic link, not followed here; not read".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        // Checked again on what was opened: it may have been swapped.
        let stat = fstat(&fd)?;
        if file_type(&stat) != SFlag::S_IFREG {
            return Err(Error::Refused(format!(
                "{}, not a regular file; not read",
                kind_name(&stat)
            )));
        }
        if stat.st_size as u64 > max {
            return Err(Error::Refused(format!(
                "larger than {} ({} bytes); not read",
                size_label(max),
                stat.st_size
            )));
        }
        if strict {
            check_file_owner(&stat)?;
        }
        Ok(File::from(fd))
    }
}

/// `1 MiB`, `64 KiB` or a byte count.
fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Pushes the components of `path` onto `pending`, the first one last.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|part| match part {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(parts.into_iter().rev());
}

/// How a file to read is opened.
#[derive(Debug, Clone, Copy)]
pub struct ReadRules {
    /// Apply the trust and ownership rules (spawnd runs as root and the
    /// configuration is not `--insecure-config`).
    pub strict: bool,
    /// The file itself may be a symbolic link (to a trusted place).
    pub follow: bool,
    pub max: u64,
}

/// Reads a whole regular file under `rules`.
pub fn read(path: &Path, rules: ReadRules) -> Result<Vec<u8>, Error> {
    let place = Place::of(path, rules.strict, rules.follow)?;
    let file = place.open_regular(rules.strict, rules.max)?;
    read_capped(file, rules.max)
}

fn read_capped(file: File, max: u64) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    file.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(Error::Refused(format!(
            "larger than {}; not read",
            size_label(max)
        )));
    }
    Ok(data)
}

/// A directory whose entries are read by name relative to it (the
/// configuration directory, `services.d/`).
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    strict: bool,
}

impl Dir {
    /// Opens the directory at `path`. With `strict` the way there must be
    /// trusted, and the directory itself owned by root or spawnd's user and
    /// not writable by others at all (sticky or not: an entry anyone adds
    /// here would be configuration).
    pub fn open(path: &Path, strict: bool) -> Result<Dir, Error> {
        let place = Place::of(path, strict, true)?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | place.nofollow();
        let fd = openat(&place.dir, place.name.as_os_str(), flags, Mode::empty())?;
        if strict {
            let stat = fstat(&fd)?;
            check_file_owner(&stat)?;
        }
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
            strict,
        })
    }

    /// The names in the directory (without `.` and `..`), unsorted.
    pub fn names(&self) -> Result<Vec<OsString>, Error> {
        let mut listing = nix::dir::Dir::openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for entry in listing.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        Ok(names)
    }

    /// Whether `name` exists in the directory (a dangling link does).
    pub fn contains(&self, name: &OsStr) -> Result<bool, Error> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the regular file `name` in this directory: a symbolic link is
    /// followed only to a trusted place (walked from the start).
    pub fn read(&self, name: &OsStr, max: u64) -> Result<Vec<u8>, Error> {
        let place = Place {
            dir: self.fd.try_clone()?,
            name: name.to_os_string(),
            shown: self.path.join(name),
            follow_last: false,
        };
        let is_link = place
            .stat()?
            .is_some_and(|stat| file_type(&stat) == SFlag::S_IFLNK);
        let rules = ReadRules {
            strict: self.strict,
            follow: true,
            max,
        };
        if is_link {
            return read(&self.path.join(name), rules);
        }
        read_capped(place.open_regular(self.strict, max)?, max)
    }
}

/// A name for a temporary file that another user cannot guess.
fn unpredictable_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's random source.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Writes `data` to `path` atomically: a new file with an unpredictable
/// name (`O_EXCL | O_NOFOLLOW`) in the same directory, then renamed over
/// `path`. `rename` replaces a link at `path` rather than following it.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let place = Place::of(path, false, false)?;
    let mut temp = OsString::from(".");
    temp.push(&place.name);
    temp.push(format!(".{:016x}", unpredictable_suffix()));
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    let fd = openat(
        &place.dir,
        temp.as_os_str(),
        flags,
        Mode::from_bits_truncate(mode),
    )?;
    let mut file = File::from(fd);
    let written = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(Error::from)
        .and_then(|()| {
            nix::fcntl::renameat(
                &place.dir,
                temp.as_os_str(),
                &place.dir,
                place.name.as_os_str(),
            )
            .map_err(Error::from)
        });
    if written.is_err() {
        let _ = nix::unistd::unlinkat(
            &place.dir,
            temp.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
    written
}

/// Removes the regular file at `path` if `still_ours` says so of its
/// contents (read under the usual rules). Never follows a link.
pub fn remove_file_if(path: &Path, max: u64, still_ours: impl FnOnce(&[u8]) -> bool) {
    let Ok(place) = Place::of(path, false, false) else {
        return;
    };
    let Ok(file) = place.open_regular(false, max) else {
        return;
    };
    match read_capped(file, max) {
        Ok(data) if still_ours(&data) => {
            let _ = nix::unistd::unlinkat(
                &place.dir,
                place.name.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        _ => {}
    }
}

/// Which socket file spawnd bound: removed or chowned only while the path
/// still is that very socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketId {
    dev: u64,
    ino: u64,
}

impl SocketId {
    // dev_t and ino_t are not u64 on every architecture.
    #[allow(clippy::unnecessary_cast)]
    fn of(stat: &FileStat) -> SocketId {
        SocketId {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
        }
    }
}

/// Where a Unix socket file is (to be) bound.
pub struct SocketPlace {
    place: Place,
}

/// What a path holds, as far as binding a socket there is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Occupant {
    Nothing,
    /// A socket file nobody answers on, of any type: safe to replace.
    StaleSocket,
    /// A socket some process answers on.
    LiveSocket,
    /// Not a socket (what, for the message).
    Other(&'static str),
}

impl SocketPlace {
    /// Resolves the directory of `path`: as root, the way there must be
    /// trusted, the socket's own directory included (a sticky one is fine:
    /// others cannot remove or rename the socket root creates there).
    pub fn open(path: &Path) -> Result<SocketPlace, Error> {
        Ok(SocketPlace {
            place: Place::of(path, is_root(), false)?,
        })
    }

    fn stat(&self) -> Result<Option<FileStat>, Error> {
        self.place.stat()
    }

    /// What the path holds now. A socket counts as live when a connection
    /// of any type (stream, datagram, seqpacket) is accepted on it.
    pub fn occupant(&self) -> Result<Occupant, Error> {
        let Some(stat) = self.stat()? else {
            return Ok(Occupant::Nothing);
        };
        if file_type(&stat) != SFlag::S_IFSOCK {
            return Ok(Occupant::Other(kind_name(&stat)));
        }
        let path = self.place.shown.as_path();
        let mut refused = false;
        for kind in [
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockType::SeqPacket,
        ] {
            let probe = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Unix,
                kind,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC
                    | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
                None,
            )?;
            let addr = nix::sys::socket::UnixAddr::new(path)?;
            match nix::sys::socket::connect(probe.as_raw_fd(), &addr) {
                // EAGAIN: a stream listener whose backlog is full is alive.
                Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => {
                    return Ok(Occupant::LiveSocket)
                }
                Err(Errno::ECONNREFUSED) => refused = true,
                Err(Errno::EPROTOTYPE) | Err(Errno::ESOCKTNOSUPPORT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if refused {
            Ok(Occupant::StaleSocket)
        } else {
            // No type connected and none was refused: leave it alone.
            Ok(Occupant::LiveSocket)
        }
    }

    /// Removes a stale socket (see `occupant`); refuses anything else.
    pub fn clear_stale(&self) -> Result<(), Error> {
        match self.occupant()? {
            Occupant::Nothing => Ok(()),
            Occupant::StaleSocket => {
                nix::unistd::unlinkat(
                    &self.place.dir,
                    self.place.name.as_os_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                )?;
                Ok(())
            }
            Occupant::LiveSocket => Err(Error::Io(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is listening on this socket",
            ))),
            Occupant::Other(what) => Err(Error::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("the path exists and is {what}, not a socket; not replaced"),
            ))),
        }
    }

    /// Binds `socket` here with `mode` (0o777 bits) from the start: the
    /// umask is set around `bind`, so the file never exists with a wider
    /// mode. Returns which file was created.
    pub fn bind(&self, socket: &OwnedFd, mode: Option<u32>) -> Result<SocketId, Error> {
        let addr = nix::sys::socket::UnixAddr::new(self.place.shown.as_path())?;
        let bound = match mode {
            Some(mode) => {
                let mask = Mode::from_bits_truncate(!mode & 0o777);
                let old = nix::sys::stat::umask(mask);
                let bound = nix::sys::socket::bind(socket.as_raw_fd(), &addr);
                nix::sys::stat::umask(old);
                bound
            }
            None => nix::sys::socket::bind(socket.as_raw_fd(), &addr),
        };
        bound?;
        match self.stat()? {
            Some(stat) if file_type(&stat) == SFlag::S_IFSOCK => Ok(SocketId::of(&stat)),
            _ => Err(Error::Refused(
                "the socket file was replaced right after bind".into(),
            )),
        }
    }

    /// Whether the path still is socket `id`.
    fn holds(&self, id: SocketId) -> Result<bool, Error> {
        Ok(self
            .stat()?
            .is_some_and(|stat| file_type(&stat) == SFlag::S_IFSOCK && SocketId::of(&stat) == id))
    }

    /// Gives socket `id` to `uid`/`gid`, without following a link; checks
    /// before and after that the path is that socket.
    pub fn chown(&self, id: SocketId, uid: Option<u32>, gid: Option<u32>) -> Result<(), Error> {
        if uid.is_none() && gid.is_none() {
            return Ok(());
        }
        let replaced =
            || Error::Refused("the socket file was replaced before its owner was set".into());
        if !self.holds(id)? {
            return Err(replaced());
        }
        nix::unistd::fchownat(
            &self.place.dir,
            self.place.name.as_os_str(),
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if !self.holds(id)? {
            return Err(replaced());
        }
        Ok(())
    }
}

/// Removes the socket file at `path` if it still is socket `id`.
pub fn remove_socket(path: &Path, id: SocketId) {
    let Ok(place) = SocketPlace::open(path) else {
        return;
    };
    if place.holds(id).unwrap_or(false) {
        let _ = nix::unistd::unlinkat(
            &place.place.dir,
            place.place.name.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
}

/// Makes sure `dir` exists and nobody but root and spawnd's user controls
/// it: created with mode 0700 if missing (its parent must exist); an
/// existing one must be a directory (not a link) owned by root or spawnd's
/// user that no one else can write to (unless sticky). The way there is checked as
/// for any trusted path, also when spawnd does not run as root: another
/// user could otherwise plant the directory (`/tmp/spawnd-UID`).
///
/// Returns whether it made the directory (see `EmptyDir`).
pub fn owned_dir(dir: &Path) -> Result<bool, Error> {
    make_dir(dir, 0o700)
}

/// `owned_dir`, making a missing directory with `mode` (less the umask).
pub fn make_dir(dir: &Path, mode: u32) -> Result<bool, Error> {
    let place = Place::of(dir, is_root(), false)?;
    let made = match nix::sys::stat::mkdirat(
        &place.dir,
        place.name.as_os_str(),
        Mode::from_bits_truncate(mode),
    ) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(e.into()),
    };
    let stat = fstatat(
        &place.dir,
        place.name.as_os_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if file_type(&stat) != SFlag::S_IFDIR {
        return Err(Error::Refused(format!(
            "{} is {}, not a directory",
            dir.display(),
            kind_name(&stat)
        )));
    }
    check_dir(&stat, dir)?;
    Ok(made)
}

/// A directory spawnd made, removed when this is dropped if it is empty
/// then (others may have put their own entries there meanwhile).
#[derive(Debug)]
pub struct EmptyDir(pub PathBuf);

impl Drop for EmptyDir {
    fn drop(&mut self) {
        // rmdir removes only an empty directory, and never follows a link.
        if let Ok(place) = Place::of(&self.0, false, false) {
            let _ = nix::unistd::unlinkat(
                &place.dir,
                place.name.as_os_str(),
                nix::unistd::UnlinkatFlags::RemoveDir,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn rules(strict: bool, follow: bool) -> ReadRules {
        ReadRules {
            strict,
            follow,
            max: 1024,
        }
    }

    #[test]
    fn reads_regular_files_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello").unwrap();
        assert_eq!(read(&file, rules(false, false)).unwrap(), b"hello");
        nix::unistd::mkfifo(&dir.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let error = read(&dir.path().join("fifo"), rules(false, false)).unwrap_err();
        assert!(
            error.to_string().contains("a FIFO, not a regular file"),
            "{error}"
        );
        std::fs::write(dir.path().join("big"), vec![b'x'; 2000]).unwrap();
        let error = read(&dir.path().join("big"), rules(false, false)).unwrap_err();
        assert!(error.to_string().contains("larger than 1 KiB"), "{error}");
        assert!(matches!(
            read(&dir.path().join("missing"), rules(false, false)),
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn a_final_link_is_followed_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), b"t").unwrap();
        std::os::unix::fs::symlink("target", dir.path().join("link")).unwrap();
        let link = dir.path().join("link");
        for strict in [false, true] {
            if strict && !is_root() {
                continue;
            }
            assert_eq!(read(&link, rules(strict, true)).unwrap(), b"t");
            let error = read(&link, rules(strict, false)).unwrap_err();
            assert!(error.to_string().contains("symbolic link"), "{error}");
        }
    }

    #[test]
    fn strict_walks_refuse_what_others_control() {
        if !is_root() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI runs the tests as root"
            );
            eprintln!("SKIPPED: the trust rules apply to root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::write(open.join("f"), b"x").unwrap();
        assert!(read(&open.join("f"), rules(true, false)).is_ok());
        // A directory others may write to, on the way.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = read(&open.join("f"), rules(true, false)).unwrap_err();
        assert!(error.to_string().contains("others can write to"), "{error}");
        // Sticky, it is trusted (the file in it is root's).
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(read(&open.join("f"), rules(true, false)).is_ok());
        // A directory on the way owned by someone else.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&open, Some(65534), None).unwrap();
        let error = read(&open.join("f"), rules(true, false)).unwrap_err();
        assert!(error.to_string().contains("owned by uid 65534"), "{error}");
        // A link owned by someone else, even to a root-owned file.
        let root_file = dir.path().join("root-only");
        std::fs::write(&root_file, b"secret").unwrap();
        let link = dir.path().join("their-link");
        std::os::unix::fs::symlink(&root_file, &link).unwrap();
        nix::unistd::fchownat(
            AT_FDCWD,
            &link,
            Some(nix::unistd::Uid::from_raw(65534)),
            None,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let error = read(&link, rules(true, true)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("symbolic link owned by uid 65534"),
            "{error}"
        );
        // A link in a parent's place, owned by someone else.
        let via = dir.path().join("via");
        std::os::unix::fs::symlink(dir.path(), &via).unwrap();
        nix::unistd::fchownat(
            AT_FDCWD,
            &via,
            Some(nix::unistd::Uid::from_raw(65534)),
            None,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let error = read(&via.join("root-only"), rules(true, false)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("symbolic link owned by uid 65534"),
            "{error}"
        );
        // A file others may write.
        std::fs::set_permissions(&root_file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = read(&root_file, rules(true, false)).unwrap_err();
        assert!(error.to_string().contains("mode 0666"), "{error}");
    }

    #[test]
    fn an_atomic_write_replaces_a_planted_link_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let pid_file = dir.path().join("spawnd.pid");
        std::os::unix::fs::symlink(&victim, &pid_file).unwrap();
        write_atomic(&pid_file, b"42\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&pid_file).unwrap(), b"42\n");
        assert!(!std::fs::symlink_metadata(&pid_file)
            .unwrap()
            .file_type()
            .is_symlink());
        // Nothing else was left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        remove_file_if(&pid_file, 64, |data| data == b"41\n");
        assert!(pid_file.exists(), "not ours: kept");
        remove_file_if(&pid_file, 64, |data| data == b"42\n");
        assert!(!pid_file.exists());
    }

    #[test]
    fn only_a_socket_nobody_answers_on_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let place = SocketPlace::open(&path).unwrap();
        assert_eq!(place.occupant().unwrap(), Occupant::Nothing);
        // A live datagram socket is live for a stream service too.
        let live = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        assert_eq!(place.occupant().unwrap(), Occupant::LiveSocket);
        assert!(place.clear_stale().is_err());
        assert!(path.exists());
        drop(live);
        assert_eq!(place.occupant().unwrap(), Occupant::StaleSocket);
        place.clear_stale().unwrap();
        assert!(!path.exists());
        std::fs::write(&path, b"").unwrap();
        assert_eq!(place.occupant().unwrap(), Occupant::Other("a regular file"));
        assert!(place.clear_stale().is_err());
        assert!(path.exists());
    }

    #[test]
    fn a_socket_is_created_with_its_mode_and_removed_only_if_still_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let place = SocketPlace::open(&path).unwrap();
        let socket = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let id = place.bind(&socket, Some(0o640)).unwrap();
        let mode = std::fs::symlink_metadata(&path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        // Replaced by another file: left alone.
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        std::fs::write(&path, b"someone else's").unwrap();
        remove_socket(&path, id);
        assert!(path.exists());
        assert!(place.chown(id, Some(0), None).is_err());
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(dir.path().join("moved"), &path).unwrap();
        remove_socket(&path, id);
        assert!(!path.exists());
    }

    #[test]
    fn a_private_directory_is_made_or_must_be_one() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("p");
        assert!(owned_dir(&private).unwrap(), "made");
        let made = EmptyDir(private.clone());
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(!owned_dir(&private).unwrap(), "there already");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(owned_dir(&private).is_err());
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(owned_dir(&link).is_err());
        // Dropped, the directory goes only when empty.
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(private.join("other"), b"").unwrap();
        drop(EmptyDir(private.clone()));
        assert!(private.exists());
        std::fs::remove_file(private.join("other")).unwrap();
        drop(made);
        assert!(!private.exists());
    }
}
