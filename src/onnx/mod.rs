//! ONNX export, built in Rust.

pub mod export;
pub mod graph;
