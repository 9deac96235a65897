//! How the importers reach their input files, and xinetd's include order.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::diag::Diags;
use super::xinetd::{self, parse::Entry, ParsedFile};
use super::MAX_INPUT;

/// How the importers reach files. `spawnd convert` reads with the rights
/// of whoever runs it (`StdFiles`); the daemon reads the files it serves
/// through `sys::fsafe`, under the configuration-file rules.
pub trait Files {
    /// A regular file's text (at most `MAX_INPUT` bytes).
    fn read(&self, path: &Path) -> Result<String, ReadError>;
    /// The names in a directory.
    fn list(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>, ReadError>;
    /// Whether `path` is a directory (a link to one counts).
    fn is_dir(&self, path: &Path) -> bool;
}

/// Why a file could not be read.
#[derive(Debug)]
pub struct ReadError {
    /// It does not exist (a missing top-level file is no error when served).
    pub missing: bool,
    pub message: String,
}

impl ReadError {
    fn io(e: &io::Error) -> ReadError {
        ReadError {
            missing: e.kind() == io::ErrorKind::NotFound,
            message: format!("cannot read: {e}"),
        }
    }
}

/// Plain reads, for `spawnd convert`.
pub struct StdFiles;

impl Files for StdFiles {
    fn read(&self, path: &Path) -> Result<String, ReadError> {
        // Checked before opening: a FIFO or device would block or never end.
        let meta = fs::metadata(path).map_err(|e| ReadError::io(&e))?;
        if !meta.is_file() {
            return Err(ReadError {
                missing: false,
                message: "not a regular file".to_string(),
            });
        }
        if meta.len() > MAX_INPUT {
            return Err(ReadError {
                missing: false,
                message: format!(
                    "larger than {} MiB; not a configuration file",
                    MAX_INPUT >> 20
                ),
            });
        }
        let bytes = fs::read(path).map_err(|e| ReadError::io(&e))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn list(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>, ReadError> {
        let entries = fs::read_dir(dir).map_err(|e| ReadError {
            missing: e.kind() == io::ErrorKind::NotFound,
            message: format!("cannot read directory: {e}"),
        })?;
        Ok(entries
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// Reads a regular file as text. `from` is the include line that named it.
pub(super) fn read_text(
    files: &dyn Files,
    path: &Path,
    name: &str,
    from: Option<(&str, usize)>,
    diags: &mut Diags,
) -> Option<String> {
    let (file, line) = from.unwrap_or((name, 0));
    let prefix = if from.is_some() {
        format!("{name}: ")
    } else {
        String::new()
    };
    match files.read(path) {
        Ok(text) => Some(text),
        Err(e) => {
            diags.error(file, line, format!("{prefix}{}", e.message));
            None
        }
    }
}

/// Reads xinetd files in xinetd's order, following includes once each.
pub(super) struct XinetdReader<'a> {
    source: &'a dyn Files,
    pub(super) files: Vec<ParsedFile>,
    seen: HashSet<PathBuf>,
    /// Every file read or named, and every directory listed or named: what
    /// a daemon serving them watches.
    pub(super) touched_files: Vec<PathBuf>,
    pub(super) touched_dirs: Vec<PathBuf>,
}

impl<'a> XinetdReader<'a> {
    pub(super) fn new(source: &'a dyn Files) -> Self {
        XinetdReader {
            source,
            files: Vec::new(),
            seen: HashSet::new(),
            touched_files: Vec::new(),
            touched_dirs: Vec::new(),
        }
    }

    /// Whether `path` (file or directory) has not been read yet; include
    /// loops and a file named twice end here.
    fn first_time(&mut self, path: &Path) -> bool {
        let key = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.seen.insert(key)
    }

    /// A path from the command line: a file is read whatever its name.
    pub(super) fn read(&mut self, path: &Path, diags: &mut Diags) {
        if self.source.is_dir(path) {
            self.read_dir(path, None, diags);
        } else {
            self.read_file(path, None, diags);
        }
    }

    fn read_dir(&mut self, dir: &Path, from: Option<(&str, usize)>, diags: &mut Diags) {
        let shown = dir.display().to_string();
        let (file, line) = from.unwrap_or((&shown, 0));
        self.touched_dirs.push(dir.to_path_buf());
        if !self.first_time(dir) {
            let what = if from.is_some() {
                format!("{shown}: ")
            } else {
                String::new()
            };
            diags.warn(file, line, format!("{what}already read; not read again"));
            return;
        }
        let names = match self.source.list(dir) {
            Ok(names) => names,
            Err(e) => {
                diags.error(file, line, format!("{shown}: {}", e.message));
                return;
            }
        };
        // xinetd reads them in C-locale order: compare bytes.
        let mut names = names;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let path = dir.join(&name);
            let text = name.to_string_lossy();
            if !xinetd::includedir_reads(&text) {
                diags.warn(
                    &path.display().to_string(),
                    0,
                    "skipped, as xinetd's includedir skips names with a '.' or ending in '~'",
                );
                continue;
            }
            if self.source.is_dir(&path) {
                continue; // xinetd does not descend either
            }
            self.read_file(&path, None, diags);
        }
    }

    pub(super) fn read_file(
        &mut self,
        path: &Path,
        from: Option<(&str, usize)>,
        diags: &mut Diags,
    ) {
        let name = path.display().to_string();
        self.touched_files.push(path.to_path_buf());
        let key = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.seen.insert(key) {
            let (file, line) = from.unwrap_or((&name, 0));
            diags.warn(
                file,
                line,
                format!("{name} was already read; not read again"),
            );
            return;
        }
        let Some(text) = read_text(self.source, path, &name, from, diags) else {
            return;
        };
        let entries = xinetd::parse::parse(&text, &name, diags);
        // Includes are read after the file that names them; a relative path
        // is taken from that file's directory (xinetd, a daemon, would take
        // it from /, which is rarely what a converted copy means).
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let includes: Vec<(bool, String, usize)> = entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Include { path, line } => Some((false, path.clone(), *line)),
                Entry::IncludeDir { path, line } => Some((true, path.clone(), *line)),
                Entry::Block(_) => None,
            })
            .collect();
        self.files.push(ParsedFile {
            file: name.clone(),
            entries,
        });
        for (is_dir, target, line) in includes {
            let target = base.join(target);
            if is_dir {
                self.read_dir(&target, Some((&name, line)), diags);
            } else {
                self.read_file(&target, Some((&name, line)), diags);
            }
        }
    }
}
