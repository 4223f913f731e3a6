//! Data in: MovieScenes pickles, MovieNet's scene318 trees, validated
//! movies, data sets, synthetic data.

pub mod dataset;
pub mod hash;
mod load;
pub mod movie;
pub mod npy;
pub mod pickle;
pub mod pickle_write;
pub mod scene318;
pub mod stft_image;
pub mod store;
pub mod synth;
pub mod tensor;
pub mod windows;

pub use movie::{LoadError, Modality, Movie, Schema};
