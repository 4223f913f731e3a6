//! The LGSS model: configuration, the network in libtorch, checkpoints.

pub mod checkpoint;
pub mod config;
pub mod cuda;
pub mod envelope;
pub mod lgss;

pub use config::Config;
pub use cuda::cuda_device;
pub use lgss::Lgss;

/// A tensor's values as f32 on the host, row-major.
pub fn f32_values(t: &tch::Tensor) -> anyhow::Result<Vec<f32>> {
    let t = t
        .to_device(tch::Device::Cpu)
        .to_kind(tch::Kind::Float)
        .contiguous();
    Ok(Vec::<f32>::try_from(t.flatten(0, -1))?)
}
