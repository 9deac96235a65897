//! `spawnd convert`: xinetd and inetd.conf importers.
//!
//! This file is the only one here that touches the file system: it reads
//! the inputs (following xinetd's `include` and `includedir`), hands their
//! text to the pure converters, and writes the result, either as a YAML
//! stream on stdout or as a configuration directory (`-o DIR`).
//!
//! Diagnostics go to stderr as `FILE:LINE: warning|error: ...`. Any error
//! means nothing is written and the exit status is 1.
//!
//! Ports of named services come from /etc/services, or from the file named
//! by `SPAWND_SERVICES_FILE` (to convert another machine's configuration, and
//! for tests), or from a built-in table when neither can be read.

mod common;
mod diag;
mod emit;
#[cfg(test)]
mod fuzz;
pub mod hosts_access;
mod inetd;
mod model;
pub mod services_db;
mod xinetd;

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::exit::Exit;

use crate::cli::ConvertCommand;
pub use diag::{Diag, Diags, Severity};
use model::Conversion;
use services_db::ServicesDb;
use xinetd::parse::Entry;
use xinetd::ParsedFile;

/// Whether xinetd's `includedir` reads a file of this name.
pub fn includedir_reads(name: &str) -> bool {
    xinetd::includedir_reads(name)
}

/// Input files larger than this are refused: no real configuration comes
/// near it, and it keeps a wrong path (a disk image, a log) from being read.
const MAX_INPUT: u64 = 4 << 20;

/// Runs a conversion; warnings go to stderr as `FILE:LINE: ...`.
pub fn run(command: &ConvertCommand) -> ExitCode {
    let mut diags = Diags::default();
    let db = services_db(&StdFiles, &mut diags);
    let (conversion, tool, output) = match command {
        ConvertCommand::Xinetd { paths, output } => {
            let mut reader = XinetdReader::new(&StdFiles);
            for path in paths {
                reader.read(path, &mut diags);
            }
            let mut conversion = Conversion::default();
            if !diags.has_errors() {
                conversion = xinetd::map::convert(&reader.files, &db, &mut diags);
            }
            (conversion, "spawnd convert xinetd", output)
        }
        ConvertCommand::Inetd { file, output } => {
            let mut conversion = Conversion::default();
            let name = file.display().to_string();
            if let Some(text) = read_text(&StdFiles, file, &name, None, &mut diags) {
                conversion.units = inetd::convert(&text, &name, &db, &mut diags);
            }
            (conversion, "spawnd convert inetd", output)
        }
    };
    let mut conversion = conversion;
    common::assign_names(&mut conversion.units, &mut diags);

    print_diags(&diags);
    if diags.has_errors() {
        eprintln!("spawnd convert: errors above; nothing written");
        return Exit::Config.into();
    }
    if conversion.units.is_empty() {
        eprintln!("spawnd convert: warning: no services found");
    }
    let docs = emit::documents(&conversion, tool);
    let written = match output {
        None => {
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(emit::stream(&docs).as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write to stdout: {e}"))
        }
        Some(dir) => write_dir(dir, &docs),
    };
    match written {
        Ok(()) => Exit::Success.into(),
        Err(message) => {
            eprintln!("spawnd convert: error: {message}");
            Exit::Config.into()
        }
    }
}

fn print_diags(diags: &Diags) {
    let mut stderr = io::stderr().lock();
    for diag in &diags.list {
        let _ = writeln!(stderr, "{diag}");
    }
}

/// The port table: /etc/services, or the file `SPAWND_SERVICES_FILE`
/// names, or the built-in table when neither can be read.
pub fn services_db(files: &dyn Files, diags: &mut Diags) -> ServicesDb {
    let path = std::env::var_os("SPAWND_SERVICES_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/services"));
    match files.read(&path) {
        Ok(text) => ServicesDb::parse(&text),
        Err(e) => {
            diags.warn(
                &path.display().to_string(),
                0,
                format!(
                    "cannot read it ({}); using spawnd's built-in table of well-known ports",
                    e.message
                        .strip_prefix("cannot read: ")
                        .unwrap_or(&e.message)
                ),
            );
            ServicesDb::builtin()
        }
    }
}

/// A service of an inetd.conf or xinetd configuration, mapped as `spawnd
/// convert` maps it, for a daemon that serves those files as they are
/// (`include_inetd_conf`, `include_xinetd`).
#[derive(Debug)]
pub struct Imported {
    pub name: String,
    /// Where it is defined.
    pub file: String,
    pub line: usize,
    /// The service file `spawnd convert` would write, or why the entry
    /// cannot be served at all (RPC, TCPMUX, a host name to listen on...).
    pub yaml: Result<String, String>,
    /// Restrictions the old super-server applied that spawnd cannot: the
    /// service must not be served while there are any.
    pub restrictions_lost: Vec<String>,
    /// The name TCP Wrappers checked it under, if they did.
    pub tcp_wrappers: Option<String>,
    /// Turned off in the file (`disable = yes`, update-inetd's `#<off>#`).
    pub disabled: bool,
}

/// What reading one inetd.conf or xinetd.conf (with its includes) gave.
#[derive(Debug, Default)]
pub struct Import {
    pub services: Vec<Imported>,
    /// Warnings and errors, each at a file and line.
    pub diags: Vec<Diag>,
    /// Files with errors: none of their entries is in `services`.
    pub broken: Vec<String>,
    /// Every file read or named and every directory listed or named, for a
    /// watcher (a file that does not exist yet is here too).
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

/// Maps the entries of the inetd.conf at `path`. A file that does not
/// exist gives no service and no error.
pub fn import_inetd(path: &Path, files: &dyn Files, db: &ServicesDb) -> Import {
    let mut diags = Diags::default();
    let name = path.display().to_string();
    let mut import = Import {
        files: vec![path.to_path_buf()],
        ..Import::default()
    };
    let units = match files.read(path) {
        Ok(text) => inetd::convert(&text, &name, db, &mut diags),
        Err(e) if e.missing => Vec::new(),
        Err(e) => {
            diags.error(&name, 0, e.message);
            Vec::new()
        }
    };
    import.finish(units, diags);
    import
}

/// Maps the services of the xinetd.conf at `path` and of the files it
/// includes. A top file that does not exist gives no service and no error.
pub fn import_xinetd(path: &Path, files: &dyn Files, db: &ServicesDb) -> Import {
    let mut diags = Diags::default();
    let mut reader = XinetdReader::new(files);
    let missing = matches!(files.read(path), Err(ref e) if e.missing);
    if !missing {
        reader.read_file(path, None, &mut diags);
    }
    let conversion = xinetd::map::convert(&reader.files, db, &mut diags);
    let mut import = Import {
        files: std::mem::take(&mut reader.touched_files),
        dirs: std::mem::take(&mut reader.touched_dirs),
        ..Import::default()
    };
    if import.files.is_empty() {
        import.files.push(path.to_path_buf());
    }
    import.finish(conversion.units, diags);
    import
}

impl Import {
    /// Names the units, leaves out those of broken files, and renders the
    /// rest as `spawnd convert` would write them.
    fn finish(&mut self, mut units: Vec<model::Unit>, mut diags: Diags) {
        common::assign_names(&mut units, &mut diags);
        let mut broken: Vec<String> = diags
            .list
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.file.clone())
            .collect();
        broken.sort();
        broken.dedup();
        for unit in units {
            let origin = unit.origin().clone();
            let in_broken = |file: &str| broken.iter().any(|b| b == file);
            let imported = match unit {
                model::Unit::Service(service) => {
                    if in_broken(&origin.file) || service.merged.iter().any(|m| in_broken(&m.file))
                    {
                        continue;
                    }
                    let mut lost = service.restrictions_lost.clone();
                    // Host names spawnd cannot match: leaving them out of a
                    // deny list lets their clients in.
                    lost.extend(service.access.comments.iter().cloned());
                    Imported {
                        name: service.name.clone(),
                        file: origin.file,
                        line: origin.line,
                        yaml: Ok(emit::service_yaml(&service, "spawnd (include)")),
                        restrictions_lost: lost,
                        tcp_wrappers: service.tcp_wrappers.clone(),
                        disabled: service.disabled.as_ref().is_some_and(|d| d.value),
                    }
                }
                model::Unit::NotConverted(entry) => {
                    if in_broken(&origin.file) {
                        continue;
                    }
                    Imported {
                        name: entry.name,
                        file: origin.file,
                        line: origin.line,
                        yaml: Err(entry.reason),
                        restrictions_lost: Vec::new(),
                        tcp_wrappers: None,
                        disabled: false,
                    }
                }
            };
            self.services.push(imported);
        }
        self.broken = broken;
        self.diags = diags.list;
    }
}

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
fn read_text(
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
struct XinetdReader<'a> {
    source: &'a dyn Files,
    files: Vec<ParsedFile>,
    seen: HashSet<PathBuf>,
    /// Every file read or named, and every directory listed or named: what
    /// a daemon serving them watches.
    touched_files: Vec<PathBuf>,
    touched_dirs: Vec<PathBuf>,
}

impl<'a> XinetdReader<'a> {
    fn new(source: &'a dyn Files) -> Self {
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
    fn read(&mut self, path: &Path, diags: &mut Diags) {
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

    fn read_file(&mut self, path: &Path, from: Option<(&str, usize)>, diags: &mut Diags) {
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

/// Writes `docs` under `dir`, refusing to replace any existing file: the
/// check comes first, so a refusal writes nothing.
fn write_dir(dir: &Path, docs: &[emit::Document]) -> Result<(), String> {
    let existing: Vec<String> = docs
        .iter()
        .map(|doc| dir.join(&doc.path))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(format!(
            "not overwriting existing file{} {} (remove {} or choose another directory)",
            if existing.len() == 1 { "" } else { "s" },
            existing.join(", "),
            if existing.len() == 1 { "it" } else { "them" },
        ));
    }
    let services = dir.join("services.d");
    fs::create_dir_all(&services)
        .map_err(|e| format!("cannot create {}: {e}", services.display()))?;
    for doc in docs {
        let path = dir.join(&doc.path);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        file.write_all(doc.text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Files in memory: the importers' reading is tested without a disk.
    struct MemFiles(BTreeMap<PathBuf, String>);

    impl MemFiles {
        fn new(files: &[(&str, &str)]) -> MemFiles {
            MemFiles(
                files
                    .iter()
                    .map(|(path, text)| (PathBuf::from(path), text.to_string()))
                    .collect(),
            )
        }
    }

    impl Files for MemFiles {
        fn read(&self, path: &Path) -> Result<String, ReadError> {
            self.0.get(path).cloned().ok_or(ReadError {
                missing: true,
                message: "cannot read: No such file or directory".to_string(),
            })
        }

        fn list(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>, ReadError> {
            Ok(self
                .0
                .keys()
                .filter(|path| path.parent() == Some(dir))
                .filter_map(|path| path.file_name().map(|n| n.to_os_string()))
                .collect())
        }

        fn is_dir(&self, path: &Path) -> bool {
            self.0.keys().any(|file| file.parent() == Some(path))
        }
    }

    fn db() -> ServicesDb {
        ServicesDb::parse("www 80/tcp\nrsync 873/tcp\n")
    }

    #[test]
    fn an_inetd_conf_is_imported_with_places_and_wrappers() {
        let files = MemFiles::new(&[(
            "/etc/inetd.conf",
            "#:STANDARD:\nwww\tstream\ttcp\tnowait nobody:www-data\t/usr/sbin/tcpd /usr/sbin/micro-httpd /var/www/html\n\
             #<off># rsync stream tcp nowait root /usr/bin/rsync rsyncd --daemon\n\
             sunrpc/1 stream rpc/tcp wait root /usr/sbin/x x\n",
        )]);
        let import = import_inetd(Path::new("/etc/inetd.conf"), &files, &db());
        assert!(import.broken.is_empty(), "{:?}", import.diags);
        let names: Vec<&str> = import.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["www", "rsync", "sunrpc"], "{:?}", import.services);
        let www = &import.services[0];
        assert_eq!((www.file.as_str(), www.line), ("/etc/inetd.conf", 2));
        assert_eq!(www.tcp_wrappers.as_deref(), Some("micro-httpd"));
        let yaml = www.yaml.as_ref().map_or("", String::as_str);
        assert!(
            yaml.contains("exec: [/usr/sbin/micro-httpd, /var/www/html]"),
            "{yaml}"
        );
        assert!(import.services[1]
            .yaml
            .as_ref()
            .is_ok_and(|y| y.contains("disabled: true")));
        assert!(import.services[1].disabled && !www.disabled);
        // RPC cannot be served at all: refused with its reason.
        assert!(import.services[2]
            .yaml
            .as_ref()
            .is_err_and(|why| why.contains("RPC")));
        assert_eq!(import.files, [PathBuf::from("/etc/inetd.conf")]);
    }

    #[test]
    fn a_missing_file_is_no_error_and_an_error_breaks_only_its_file() {
        let files = MemFiles::new(&[]);
        let import = import_inetd(Path::new("/etc/inetd.conf"), &files, &db());
        assert!(import.diags.is_empty() && import.services.is_empty());
        let import = import_xinetd(Path::new("/etc/xinetd.conf"), &files, &db());
        assert!(import.diags.is_empty() && import.services.is_empty());
        assert_eq!(import.files, [PathBuf::from("/etc/xinetd.conf")]);

        let service = |name: &str| {
            format!("service {name}\n{{\n socket_type = stream\n wait = no\n user = root\n server = /usr/bin/{name}\n}}\n")
        };
        let files = MemFiles::new(&[
            (
                "/etc/xinetd.conf",
                "defaults\n{\n}\nincludedir /etc/xinetd.d\n",
            ),
            ("/etc/xinetd.d/rsync", &service("rsync")),
            (
                "/etc/xinetd.d/broken",
                "service www\n{\n socket_type = stream\n",
            ),
            ("/etc/xinetd.d/rsync.rpmsave", &service("www")),
        ]);
        let import = import_xinetd(Path::new("/etc/xinetd.conf"), &files, &db());
        assert_eq!(
            import.broken,
            ["/etc/xinetd.d/broken"],
            "{:?}",
            import.diags
        );
        let names: Vec<&str> = import.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["rsync"]);
        // xinetd checks TCP Wrappers under the server's name.
        assert_eq!(import.services[0].tcp_wrappers.as_deref(), Some("rsync"));
        assert_eq!(import.dirs, [PathBuf::from("/etc/xinetd.d")]);
        assert!(import
            .files
            .contains(&PathBuf::from("/etc/xinetd.d/broken")));
    }
}
