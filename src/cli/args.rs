//! Command-line definitions. Kept apart from `main` so man pages and shell
//! completions can be generated from the same types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// An inetd-style super-server: holds listening sockets open and starts a
/// service's program only when a client arrives.
#[derive(Debug, Parser)]
#[command(name = "spawnd", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(Debug, Args)]
pub struct Verbosity {
    /// Log level: error, warn, info, debug or trace (overrides RUST_LOG).
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        ignore_case = true,
        value_parser = clap::builder::TypedValueParser::map(
            clap::builder::PossibleValuesParser::new(LEVELS),
            level
        )
    )]
    pub log_level: Option<log::LevelFilter>,

    /// More output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigDir {
    /// Configuration directory holding spawnd.yaml and services.d/.
    #[arg(
        short = 'c',
        long = "config-dir",
        env = "SPAWND_CONFIG_DIR",
        default_value = "/etc/spawnd",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// Accept configuration files writable by users other than root (only
    /// matters when spawnd runs as root).
    #[arg(long)]
    pub insecure_config: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the configured services (foreground by default).
    Run(RunArgs),
    /// Validate the configuration, print a summary, exit 1 on any error.
    Check(ConfigDir),
    /// Print one row per service: name, socket, listen, wait, program.
    List(ConfigDir),
    /// Show the running spawnd's services, states and counters.
    Status(StatusArgs),
    /// Convert an xinetd or inetd configuration to services.d YAML.
    #[command(subcommand)]
    Convert(ConvertCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigDir,

    /// Detach from the terminal and run in the background.
    #[arg(long)]
    pub daemon: bool,

    /// Write spawnd's pid to FILE (removed at exit).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigDir,

    /// Print the JSON document instead of a table.
    #[arg(long)]
    pub json: bool,

    /// The control socket (default: control_socket in spawnd.yaml, else
    /// /run/spawnd/control.sock as root, $XDG_RUNTIME_DIR/spawnd/control.sock
    /// or /tmp/spawnd-UID/control.sock otherwise).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConvertCommand {
    /// xinetd.conf and xinetd.d files or directories -> services.d YAML.
    Xinetd {
        /// Files or directories to read.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Write a configuration directory (DIR/services.d/*.yaml, DIR/spawnd.yaml)
        /// instead of a YAML stream on stdout.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// A classic inetd.conf -> services.d YAML.
    Inetd {
        /// The inetd.conf file to read.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write a configuration directory instead of a YAML stream on stdout.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

/// The values of `--log-level`, offered by the shell completions too.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// One of `LEVELS` (the parser has checked it) as a level.
fn level(text: String) -> log::LevelFilter {
    text.parse().unwrap_or(log::LevelFilter::Info)
}

pub fn parse() -> Cli {
    Cli::parse()
}
