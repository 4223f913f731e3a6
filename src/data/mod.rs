//! Data in: MovieScenes pickles, validated movies, data sets, synthetic data.

pub mod dataset;
pub mod hash;
pub mod movie;
pub mod pickle;
pub mod pickle_write;
pub mod synth;
pub mod tensor;
pub mod windows;

pub use movie::{LoadError, Modality, Movie, Schema};
