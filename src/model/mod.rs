//! The LGSS model: configuration, the network in libtorch, checkpoints.

pub mod checkpoint;
pub mod config;
pub mod envelope;
pub mod lgss;

pub use config::Config;
pub use lgss::Lgss;
