//! Follows changes to the included inetd.conf and xinetd files (inotify,
//! one descriptor in the loop; never polling), so a package tool that
//! edits them (`update-inetd`, a file dropped into /etc/xinetd.d) takes
//! effect without anyone signalling spawnd.
//!
//! Each file is watched through its directory as well as by itself: tools
//! either write a new file and rename it over the old one (a new inode, seen
//! only by the directory) or rewrite it in place (seen by both; a file
//! reached through a symbolic link only by itself). An included directory is
//! watched as a whole. A path that does not exist yet is watched through the
//! nearest directory above it that does, for the name that leads to it.
//! Only finished writes count (`IN_CLOSE_WRITE`, not `IN_MODIFY`), so a
//! file is never read half written by a tool that closes it when done.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::config::include::Watch;

/// Names a watched directory matters for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    /// Every entry an xinetd `includedir` would read.
    Included,
    Only(BTreeSet<OsString>),
}

impl Names {
    fn matters(&self, name: &OsStr) -> bool {
        match self {
            Names::Included => crate::convert::includedir_reads(&name.to_string_lossy()),
            Names::Only(names) => names.contains(name),
        }
    }

    fn merge(&mut self, other: Names) {
        match (self, other) {
            (Names::Only(mine), Names::Only(theirs)) => mine.extend(theirs),
            (this, Names::Included) => *this = Names::Included,
            (Names::Included, Names::Only(_)) => {}
        }
    }
}

/// The directories to watch, each for the names that matter in it. A
/// missing directory is replaced by its nearest existing ancestor (asked
/// through `exists`) watched for the name leading down to it.
pub fn plan(watch: &Watch, exists: &dyn Fn(&Path) -> bool) -> BTreeMap<PathBuf, Names> {
    let mut dirs: BTreeMap<PathBuf, Names> = BTreeMap::new();
    let mut add = |dir: PathBuf, names: Names| match dirs.get_mut(&dir) {
        Some(known) => known.merge(names),
        None => {
            dirs.insert(dir, names);
        }
    };
    // (path, what to watch in it if it is a directory that exists)
    let mut wanted: Vec<(PathBuf, Option<Names>)> = Vec::new();
    for file in &watch.files {
        wanted.push((file.clone(), None));
    }
    for dir in &watch.dirs {
        wanted.push((dir.clone(), Some(Names::Included)));
    }
    for (path, inside) in wanted {
        if let Some(names) = inside {
            if exists(&path) {
                add(path.clone(), names);
            }
        }
        // Its parent, for its name; up to the first directory that exists.
        let mut child = path;
        while let (Some(parent), Some(name)) = (child.parent(), child.file_name()) {
            let name = name.to_os_string();
            let parent = parent.to_path_buf();
            if parent.as_os_str().is_empty() {
                break;
            }
            if exists(&parent) {
                add(parent, Names::Only(BTreeSet::from([name])));
                break;
            }
            child = parent;
        }
    }
    dirs
}

#[derive(Debug)]
enum Target {
    Dir(PathBuf, Names),
    File(PathBuf),
}

pub struct Watcher {
    inotify: Inotify,
    targets: HashMap<WatchDescriptor, Target>,
}

const DIR_EVENTS: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

const FILE_EVENTS: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

impl Watcher {
    /// A new inotify instance, non-blocking, above the descriptor slots.
    pub fn new() -> Result<Watcher, String> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| format!("cannot create an inotify instance: {e}"))?;
        let fd = crate::daemon::slots::above(OwnedFd::from(inotify))
            .map_err(|e| format!("cannot move the inotify descriptor: {e}"))?;
        // SAFETY: `fd` is the inotify instance made above, moved to another
        // number; nothing else owns it.
        let inotify = unsafe { Inotify::from_owned_fd(fd) };
        Ok(Watcher {
            inotify,
            targets: HashMap::new(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// Watches what `watch` names, and nothing else any more. Returns what
    /// could not be watched (to log; those changes need a SIGHUP).
    pub fn set(&mut self, watch: &Watch) -> Vec<String> {
        let mut problems = Vec::new();
        let mut targets: HashMap<WatchDescriptor, Target> = HashMap::new();
        let dirs = plan(watch, &|path| path.is_dir());
        for (dir, names) in dirs {
            match self.inotify.add_watch(&dir, DIR_EVENTS) {
                Ok(wd) => match targets.get_mut(&wd) {
                    // Two paths to one directory: one watch for both.
                    Some(Target::Dir(_, known)) => known.merge(names),
                    _ => {
                        targets.insert(wd, Target::Dir(dir, names));
                    }
                },
                Err(e) => problems.push(format!("{}: {e}", dir.display())),
            }
        }
        for file in &watch.files {
            match self.inotify.add_watch(file, FILE_EVENTS) {
                Ok(wd) => {
                    targets.entry(wd).or_insert(Target::File(file.clone()));
                }
                // Not there (yet), or a directory: its directory's watch
                // sees it come.
                Err(Errno::ENOENT | Errno::ENOTDIR) => {}
                Err(e) => problems.push(format!("{}: {e}", file.display())),
            }
        }
        for old in self.targets.keys() {
            if !targets.contains_key(old) {
                let _ = self.inotify.rm_watch(*old);
            }
        }
        self.targets = targets;
        problems
    }

    /// Reads every pending event; returns the first path whose change
    /// matters, if any did.
    pub fn changed(&mut self) -> Option<PathBuf> {
        let mut first: Option<PathBuf> = None;
        // The descriptor is edge-triggered in the loop: read until EAGAIN.
        // Each read takes what is queued; the queue is bounded by the
        // kernel (max_queued_events), so is this loop.
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EINTR) => continue,
                Err(_) => break, // EAGAIN: drained
            };
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    first.get_or_insert_with(|| PathBuf::from("(event queue overflowed)"));
                    continue;
                }
                let path = match (self.targets.get(&event.wd), &event.name) {
                    (None, _) => continue, // a watch given up
                    (Some(Target::Dir(dir, names)), Some(name)) => {
                        if !names.matters(name) {
                            continue;
                        }
                        dir.join(name)
                    }
                    (Some(Target::Dir(dir, _)), None) => dir.clone(),
                    (Some(Target::File(file)), _) => file.clone(),
                };
                first.get_or_insert(path);
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Names {
        Names::Only(list.iter().map(OsString::from).collect())
    }

    #[test]
    fn files_are_watched_through_their_directories() {
        let watch = Watch {
            files: vec!["/etc/inetd.conf".into(), "/etc/hosts.deny".into()],
            dirs: vec![],
            ..Watch::default()
        };
        let plan = plan(&watch, &|_| true);
        assert_eq!(
            plan,
            BTreeMap::from([(PathBuf::from("/etc"), names(&["hosts.deny", "inetd.conf"]))])
        );
    }

    #[test]
    fn an_included_directory_is_watched_whole_and_by_its_name() {
        let watch = Watch {
            files: vec!["/etc/xinetd.conf".into()],
            dirs: vec!["/etc/xinetd.d".into()],
            ..Watch::default()
        };
        let plan = plan(&watch, &|_| true);
        assert_eq!(plan.get(Path::new("/etc/xinetd.d")), Some(&Names::Included));
        assert_eq!(
            plan.get(Path::new("/etc")),
            Some(&names(&["xinetd.conf", "xinetd.d"]))
        );
        assert!(Names::Included.matters(OsStr::new("rsync")));
        assert!(!Names::Included.matters(OsStr::new(".rsync.swp")));
        assert!(!Names::Included.matters(OsStr::new("rsync~")));
    }

    #[test]
    fn a_missing_path_is_watched_from_the_nearest_directory_that_exists() {
        let watch = Watch {
            files: vec!["/srv/a/b/inetd.conf".into()],
            dirs: vec!["/srv/x.d".into()],
            ..Watch::default()
        };
        let exists = |p: &Path| p == Path::new("/srv") || p == Path::new("/");
        let plan = plan(&watch, &exists);
        assert_eq!(
            plan,
            BTreeMap::from([(PathBuf::from("/srv"), names(&["a", "x.d"]))])
        );
    }
}
