//! The converters' mapping for a daemon that serves inetd.conf and xinetd
//! files as they are (`include_inetd_conf`, `include_xinetd`): each entry
//! rendered as the services.d file `spawnd convert` would write, with where
//! it is and what the old super-server restricted that spawnd cannot.

use std::path::{Path, PathBuf};

use super::diag::{Diag, Diags, Severity};
use super::read::{Files, XinetdReader};
use super::services_db::ServicesDb;
use super::{common, emit, inetd, model, xinetd};

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
    // `defaults` apply to the services of every file: with an error in a
    // file that has them, what the others get from them is not known
    // (a `no_access` entry left out would let clients in), so nothing is
    // taken from any file.
    let with_defaults: Vec<&str> = reader
        .files
        .iter()
        .filter(|parsed| {
            parsed.entries.iter().any(|entry| {
                matches!(entry, xinetd::parse::Entry::Block(b) if b.kind == xinetd::parse::BlockKind::Defaults)
            })
        })
        .map(|parsed| parsed.file.as_str())
        .collect();
    let defaults_broken = diags
        .list
        .iter()
        .any(|d| d.severity == Severity::Error && with_defaults.contains(&d.file.as_str()));
    import.finish(conversion.units, diags);
    if defaults_broken {
        import.services.clear();
        import.broken = reader
            .files
            .iter()
            .map(|parsed| parsed.file.clone())
            .collect();
    }
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

#[cfg(test)]
mod tests {
    use super::super::read::ReadError;
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

        // An error in a file with `defaults` breaks every file: what the
        // others inherit is not known.
        let files = MemFiles::new(&[
            (
                "/etc/xinetd.conf",
                "defaults\n{\n no_access = 10.0.0.300\n}\nincludedir /etc/xinetd.d\n",
            ),
            ("/etc/xinetd.d/rsync", &service("rsync")),
        ]);
        let import = import_xinetd(Path::new("/etc/xinetd.conf"), &files, &db());
        assert!(import.services.is_empty(), "{:?}", import.services);
        assert_eq!(
            import.broken,
            ["/etc/xinetd.conf", "/etc/xinetd.d/rsync"],
            "{:?}",
            import.diags
        );
    }
}
