//! ONNX export, built in Rust.

pub mod contract;
pub mod export;
pub mod graph;
pub mod per_shot;
