//! The LGSS model: configuration, the network in libtorch (feature `tch`),
//! checkpoints.

#[cfg(feature = "tch")]
pub mod audnet;
pub mod audnet_geometry;
pub mod checkpoint;
pub mod config;
#[cfg(feature = "tch")]
pub mod cuda;
pub mod envelope;
#[cfg(feature = "tch")]
pub mod lgss;

pub use config::Config;
#[cfg(feature = "tch")]
pub use cuda::cuda_device;
#[cfg(feature = "tch")]
pub use lgss::Lgss;

/// A tensor's values as f32 on the host, row-major.
#[cfg(feature = "tch")]
pub fn f32_values(t: &tch::Tensor) -> anyhow::Result<Vec<f32>> {
    let t = t
        .to_device(tch::Device::Cpu)
        .to_kind(tch::Kind::Float)
        .contiguous();
    Ok(Vec::<f32>::try_from(t.flatten(0, -1))?)
}
