//! Integration tests: one binary (linking tch, ort and tract once), one
//! module per concern. Truth comes from `tests/fixtures`, written by real
//! Python, torch, numpy and scikit-learn.

mod agreement;
mod cli;
mod common;
mod grouping;
mod hostile;
mod metrics;
mod model_exact;
mod npy;
mod pages;
mod pickle_read;
mod pickle_write;
mod runtimes;
mod scene318;
mod sceneseg;
mod serve;
mod shard;
mod special_files;
mod synth;
mod torch_file;
mod train;
mod video;
