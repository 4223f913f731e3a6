//! LGSS movie scene segmentation: MovieScenes data, the model, training,
//! ONNX export, inference runtimes, and the challenge's and the paper's
//! (SceneSeg's) metrics.

pub mod agreement;
pub mod catalogue;
pub mod cli;
pub mod data;
pub mod fsutil;
pub mod grouping;
pub mod heap;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod page;
pub mod phases;
pub mod progress;
pub mod regular_file;
pub mod rng;
pub mod runtime;
pub mod scene_formats;
pub mod sceneseg_metrics;
pub mod segment;
pub mod serve;
pub mod timeline;
#[cfg(feature = "tch")]
pub mod train;
pub mod video;
