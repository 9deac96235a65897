//! Name resolution done once at load time, never on the connection path:
//! users, groups and supplementary groups become ids; programs must exist
//! and be executable.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use super::error::{locate_key, ConfigError};
use super::model::{Action, Principal, Service};

/// The ids a child switches to before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

fn error(service: &Service, key: &str, message: String) -> ConfigError {
    let text = std::fs::read_to_string(&service.file).unwrap_or_default();
    ConfigError::new(&service.file, message)
        .at(locate_key(&text, &[key]))
        .key(key)
}

fn lookup_user(user: &Principal) -> Result<User, String> {
    let found = match user {
        Principal::Id(id) => User::from_uid(Uid::from_raw(*id)),
        Principal::Name(name) => User::from_name(name),
    };
    match found {
        Ok(Some(user)) => Ok(user),
        Ok(None) if matches!(user, Principal::Id(_)) => Err(format!("no user with uid {user}")),
        Ok(None) => Err(format!("no such user \"{user}\"")),
        Err(e) => Err(format!("cannot look up user {user}: {e}")),
    }
}

fn lookup_group(group: &Principal) -> Result<u32, String> {
    match group {
        Principal::Id(id) => Ok(*id),
        Principal::Name(name) => match Group::from_name(name) {
            Ok(Some(group)) => Ok(group.gid.as_raw()),
            Ok(None) => Err(format!("no such group {name:?}")),
            Err(e) => Err(format!("cannot look up group {name}: {e}")),
        },
    }
}

/// The credentials a service asks for, or `None` to run as spawnd does.
pub fn credentials(service: &Service) -> Result<Option<Credentials>, ConfigError> {
    if service.user.is_none() && service.group.is_none() && service.groups.is_none() {
        return Ok(None);
    }
    let user = match &service.user {
        Some(principal) => Some(lookup_user(principal).map_err(|m| error(service, "user", m))?),
        None => None,
    };
    let gid = match (&service.group, &user) {
        (Some(group), _) => lookup_group(group).map_err(|m| error(service, "group", m))?,
        (None, Some(user)) => user.gid.as_raw(),
        (None, None) => nix::unistd::getegid().as_raw(),
    };
    let uid = user
        .as_ref()
        .map_or_else(|| nix::unistd::geteuid().as_raw(), |u| u.uid.as_raw());
    let mut groups = match (&service.groups, &user) {
        (Some(list), _) => list
            .iter()
            .map(lookup_group)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| error(service, "groups", m))?,
        (None, Some(user)) => {
            let name = CString::new(user.name.as_bytes())
                .map_err(|_| error(service, "user", "bad user name".into()))?;
            nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                .map_err(|e| {
                    error(
                        service,
                        "user",
                        format!("cannot list groups of {}: {e}", user.name),
                    )
                })?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        (None, None) => Vec::new(),
    };
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    groups.dedup();
    if !nix::unistd::geteuid().is_root() {
        let same = uid == nix::unistd::geteuid().as_raw() && gid == nix::unistd::getegid().as_raw();
        if !same || service.groups.is_some() {
            let key = if service.user.is_some() {
                "user"
            } else if service.group.is_some() {
                "group"
            } else {
                "groups"
            };
            return Err(error(
                service,
                key,
                "changing user or groups needs spawnd to run as root (remove the key to run as spawnd's own user)".into(),
            ));
        }
        return Ok(None);
    }
    Ok(Some(Credentials { uid, gid, groups }))
}

/// The program as the child will see it (inside `chroot`, if set).
fn program_on_disk(service: &Service, program: &Path) -> PathBuf {
    match &service.chroot {
        Some(root) => root.join(program.strip_prefix("/").unwrap_or(program)),
        None => program.to_path_buf(),
    }
}

fn check_program(service: &Service) -> Result<(), ConfigError> {
    let Action::Exec { program, .. } = &service.action else {
        return Ok(());
    };
    let path = program_on_disk(service, program);
    let meta = std::fs::metadata(&path)
        .map_err(|e| error(service, "exec", format!("program {}: {e}", path.display())))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(error(
            service,
            "exec",
            format!("program {} is not an executable file", path.display()),
        ));
    }
    Ok(())
}

fn check_readable(service: &Service, key: &str, path: &Option<PathBuf>) -> Result<(), ConfigError> {
    match path {
        Some(path) => std::fs::File::open(path)
            .map(drop)
            .map_err(|e| error(service, key, format!("{}: {e}", path.display()))),
        None => Ok(()),
    }
}

/// Resolves what a service needs from the system; every problem is returned.
pub fn resolve(service: &mut Service) -> Result<(), Vec<ConfigError>> {
    let mut problems = Vec::new();
    if let Err(e) = check_program(service) {
        problems.push(e);
    }
    match credentials(service) {
        Ok(credentials) => service.credentials = credentials,
        Err(e) => problems.push(e),
    }
    for (key, path) in [
        ("banner", &service.banners.banner),
        ("banner_success", &service.banners.success),
        ("banner_fail", &service.banners.fail),
    ] {
        if let Err(e) = check_readable(service, key, path) {
            problems.push(e);
        }
    }
    if let Some(owner) = &service.unix_socket.owner {
        if let Err(message) = lookup_user(owner) {
            problems.push(error(service, "unix_owner", message));
        }
    }
    if let Some(group) = &service.unix_socket.group {
        if let Err(message) = lookup_group(group) {
            problems.push(error(service, "unix_group", message));
        }
    }
    if let Some(root) = &service.chroot {
        if !root.is_dir() {
            problems.push(error(
                service,
                "chroot",
                format!("{} is not a directory", root.display()),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
