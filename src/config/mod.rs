//! Configuration: `load` reads files (the only I/O), `raw` is the file
//! format as serde sees it, `validate` turns it into the checked `model`,
//! and `resolve` looks up users and programs once at load time.

pub mod error;
#[cfg(test)]
mod fuzz;
pub mod keys;
pub mod load;
pub mod model;
pub mod raw;
pub mod resolve;
pub mod units;
pub mod validate;

pub use error::ConfigError;
pub use load::{load, Loaded, Options};
pub use model::*;
