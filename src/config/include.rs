//! Services served straight from an inetd.conf or an xinetd configuration
//! (`include_inetd_conf`, `include_xinetd` in spawnd.yaml), so that the
//! packages of a distribution that register themselves there (update-inetd,
//! files dropped into /etc/xinetd.d) are served with no other step.
//!
//! Each load maps the files with the converter (`crate::convert`), in
//! memory, exactly as `spawnd convert` would write them, and checks the
//! result as a services.d file. The files are read through `fsafe`, under
//! the rules for configuration files.
//!
//! An entry is not served (fail closed), with the reason, when the old
//! super-server refused clients that spawnd would let in: a restricting
//! flag spawnd lacks, a host name in `only_from`/`no_access` (spawnd matches
//! addresses and never resolves), or a TCP Wrappers rule in
//! /etc/hosts.allow or /etc/hosts.deny that could refuse one of its clients.
//! An included file with errors contributes nothing; the services running
//! from it are kept as they are (as for a broken services.d file).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::model::{Service, SourceLine};
use super::raw::{RawDefaults, RawService};
use crate::convert::{self, Files, Import, ReadError, Severity};
use crate::sys::fsafe;

/// Included files larger than this are refused (as `spawnd convert` does).
const MAX_INCLUDED: u64 = 4 << 20;

/// Where TCP Wrappers' rules are: /etc, or the directory named by
/// `SPAWND_HOSTS_ACCESS_DIR` (to serve another root's files, and for tests).
fn hosts_access_dir() -> PathBuf {
    std::env::var_os("SPAWND_HOSTS_ACCESS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc"))
}

/// What spawnd watches to follow changes to the included files: the files
/// (a file that does not exist yet too) and the directories listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    /// What `stamp` said just after the files were read: the watches are
    /// set after reading, so a change in between shows as another stamp.
    pub read_stamp: u64,
}

impl Watch {
    /// A digest of what `stat` says of every file and directory watched
    /// (inode, size, modification and change times; missing ones too).
    pub fn stamp(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        use std::os::unix::fs::MetadataExt;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for path in self.files.iter().chain(&self.dirs) {
            match std::fs::metadata(path) {
                Ok(m) => (
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                )
                    .hash(&mut hasher),
                Err(e) => e.raw_os_error().hash(&mut hasher),
            }
        }
        hasher.finish()
    }
}

/// An included entry that is not served, and why.
#[derive(Debug)]
pub struct Refused {
    pub name: String,
    pub error: ConfigError,
}

/// The services of the included files.
#[derive(Debug, Default)]
pub struct Included {
    /// Checked (not yet resolved), each with the YAML it was read from.
    pub services: Vec<(Service, String)>,
    pub refused: Vec<Refused>,
    /// Errors in the included files (each of those files contributes no
    /// service).
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
    /// The files with errors: services running from them are kept.
    pub broken: Vec<PathBuf>,
    pub watch: Watch,
}

/// Reads files under the configuration-file rules (`fsafe`).
struct Trusted {
    strict: bool,
}

impl Files for Trusted {
    fn read(&self, path: &Path) -> Result<String, ReadError> {
        let rules = fsafe::ReadRules {
            strict: self.strict,
            follow: true,
            max: MAX_INCLUDED,
        };
        match fsafe::read(path, rules) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(fsafe::Error::Io(e)) => Err(ReadError {
                missing: e.kind() == std::io::ErrorKind::NotFound,
                message: format!("cannot read: {e}"),
            }),
            Err(refused) => Err(ReadError {
                missing: false,
                message: refused.to_string(),
            }),
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>, ReadError> {
        let listed = fsafe::Dir::open(dir, self.strict).and_then(|d| d.names());
        listed.map_err(|e| ReadError {
            missing: matches!(&e, fsafe::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound),
            message: format!("cannot read directory: {e}"),
        })
    }

    fn is_dir(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.is_dir())
    }
}

/// TCP Wrappers' two files, read once per load when a service needs them.
struct HostsAccess {
    allow: (String, String),
    deny: (String, String),
}

impl HostsAccess {
    /// Reads them; `Err` names one that exists but cannot be read (then
    /// nothing that needs them is served).
    fn read(files: &Trusted) -> Result<HostsAccess, String> {
        let dir = hosts_access_dir();
        let read = |name: &str| -> Result<(String, String), String> {
            let path = dir.join(name);
            let shown = path.display().to_string();
            match files.read(&path) {
                Ok(text) => Ok((shown, text)),
                Err(e) if e.missing => Ok((shown, String::new())),
                Err(e) => Err(format!("{shown}: {}", e.message)),
            }
        };
        Ok(HostsAccess {
            allow: read("hosts.allow")?,
            deny: read("hosts.deny")?,
        })
    }

    fn refusal(&self, daemon: &str) -> Option<String> {
        convert::hosts_access::refusal(
            daemon,
            (&self.allow.0, &self.allow.1),
            (&self.deny.0, &self.deny.1),
        )
    }
}

/// The files TCP Wrappers read, for the watcher.
fn hosts_access_files() -> [PathBuf; 2] {
    let dir = hosts_access_dir();
    [dir.join("hosts.allow"), dir.join("hosts.deny")]
}

/// Loads the included files `global` names. `taken`: the names of the
/// services.d services, which win a clash.
pub fn load(
    inetd_conf: Option<&Path>,
    xinetd_conf: Option<&Path>,
    defaults: &RawDefaults,
    taken: &HashSet<String>,
    strict: bool,
) -> Included {
    let files = Trusted { strict };
    let mut included = Included::default();
    if inetd_conf.is_none() && xinetd_conf.is_none() {
        return included;
    }
    let mut port_notes = convert::Diags::default();
    let db = convert::services_db(&files, &mut port_notes);
    included
        .warnings
        .extend(port_notes.list.iter().map(diag_error));
    let mut imports: Vec<Import> = Vec::new();
    if let Some(path) = inetd_conf {
        imports.push(convert::import_inetd(path, &files, &db));
    }
    if let Some(path) = xinetd_conf {
        imports.push(convert::import_xinetd(path, &files, &db));
    }
    let mut hosts: Option<Result<HostsAccess, String>> = None;
    let mut names: HashSet<String> = HashSet::new();
    for import in imports {
        for diag in import.diags {
            let error = diag_error(&diag);
            match diag.severity {
                Severity::Error => included.errors.push(error),
                Severity::Warning => included.warnings.push(error),
            }
        }
        included
            .broken
            .extend(import.broken.iter().map(PathBuf::from));
        included.watch.files.extend(import.files);
        included.watch.dirs.extend(import.dirs);
        for entry in import.services {
            let at = |message: String| {
                ConfigError::new(Path::new(&entry.file), message).at(Some((entry.line, 0)))
            };
            if taken.contains(&entry.name) {
                included.warnings.push(at(format!(
                    "service {}: services.d/{}.yaml has the same name and wins; this entry is not served",
                    entry.name, entry.name
                )));
                continue;
            }
            if !names.insert(entry.name.clone()) {
                included.warnings.push(at(format!(
                    "service {}: an included service of that name comes first; this entry is not served",
                    entry.name
                )));
                continue;
            }
            let refuse = |included: &mut Included, why: String| {
                included.refused.push(Refused {
                    name: entry.name.clone(),
                    error: at(format!("service {} not served: {why}", entry.name)),
                });
            };
            let yaml = match &entry.yaml {
                Ok(yaml) => yaml,
                Err(reason) => {
                    refuse(&mut included, reason.clone());
                    continue;
                }
            };
            // A disabled entry is not served anyway: nothing to refuse.
            if !entry.restrictions_lost.is_empty() && !entry.disabled {
                refuse(
                    &mut included,
                    format!(
                        "it would let in clients the old super-server refused ({}); \
                         convert it (spawnd convert) and write the rule under access:",
                        entry.restrictions_lost.join("; ")
                    ),
                );
                continue;
            }
            if let Some(daemon) = entry.tcp_wrappers.as_ref().filter(|_| !entry.disabled) {
                let rules = hosts.get_or_insert_with(|| HostsAccess::read(&files));
                let why = match rules {
                    Ok(rules) => rules.refusal(daemon),
                    Err(unreadable) => {
                        Some(format!("TCP Wrappers' rules cannot be read: {unreadable}"))
                    }
                };
                if let Some(why) = why {
                    refuse(
                        &mut included,
                        format!(
                            "TCP Wrappers would refuse some of its clients, and spawnd does not \
                             read their rules: {why}; convert it (spawnd convert) and write the \
                             rule under access:"
                        ),
                    );
                    continue;
                }
            }
            match service_of(&entry.file, entry.line, &entry.name, yaml, defaults) {
                Ok(service) => included.services.push((service, yaml.clone())),
                Err(why) => refuse(&mut included, why),
            }
        }
    }
    if hosts.is_some() {
        included.watch.files.extend(hosts_access_files());
    }
    included.watch.read_stamp = included.watch.stamp();
    included
}

/// Checks the YAML of an included entry as a services.d file.
fn service_of(
    file: &str,
    line: usize,
    name: &str,
    yaml: &str,
    defaults: &RawDefaults,
) -> Result<Service, String> {
    let path = Path::new(file);
    let raw: RawService = super::error::deserialize(yaml).map_err(|e| e.to_string())?;
    let mut service = super::validate::service(path, yaml, name, raw, defaults)
        .map_err(|errors| describe(&errors))?;
    service.line = Some(SourceLine(line));
    Ok(service)
}

/// Problems found in an included service's mapped YAML, told without the
/// YAML's own positions (which are not the file's).
fn describe(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| match &e.key {
            Some(key) => format!("{key}: {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A problem found in an included service after it was read (by `resolve`,
/// by the checks across services), placed at its entry.
pub fn relocate(service: &Service, errors: &[ConfigError]) -> ConfigError {
    let line = service.line.map_or(0, |SourceLine(line)| line);
    ConfigError::new(
        &service.file,
        format!("service {}: {}", service.name, describe(errors)),
    )
    .at(Some((line, 0)))
}

fn diag_error(diag: &convert::Diag) -> ConfigError {
    let error = ConfigError::new(Path::new(&diag.file), diag.message.clone());
    if diag.line == 0 {
        error
    } else {
        error.at(Some((diag.line, 0)))
    }
}
