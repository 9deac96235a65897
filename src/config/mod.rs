//! Configuration: `load` reads files (the only I/O), `raw` is the file
//! format as serde sees it, `validate` turns it into the checked `model`,
//! and `resolve` looks up users and programs once at load time.

pub mod error;
#[cfg(test)]
mod fuzz;
pub mod include;
pub mod keys;
pub mod load;
pub mod model;
pub mod raw;
pub mod resolve;
pub mod units;
pub mod validate;

pub use error::ConfigError;

/// Where the configuration is and how its files are trusted: what the
/// daemon, `check`, `list` and `status` load from (`crate::cli` makes one
/// from the command line).
#[derive(Debug, Clone)]
pub struct Location {
    /// The directory holding `spawnd.yaml` and `services.d/`.
    pub dir: std::path::PathBuf,
    /// Files must be owned and writable only as configuration is (see
    /// `crate::sys::fsafe`); `--insecure-config` turns it off.
    pub strict: bool,
}

impl Location {
    /// Every service, checked and resolved.
    pub fn load(&self) -> Result<Loaded, Vec<ConfigError>> {
        load(
            &self.dir,
            Options {
                strict: self.strict,
                resolve: true,
            },
        )
    }

    /// Only `spawnd.yaml` (for commands that talk to a running spawnd).
    pub fn load_global(&self) -> Result<Global, Vec<ConfigError>> {
        load::load_global(&self.dir, self.strict)
    }
}
pub use load::{load, Loaded, Options};
pub use model::*;
