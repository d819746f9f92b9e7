//! The emulator's own error type (starting it, configuring it).

use std::io;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The configuration is inconsistent; the message names the setting.
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    /// Binding the listening address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}
