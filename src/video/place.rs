//! Place features: each shot's middle keyframe through an image network the
//! user provides as ONNX (`[N, 3, 224, 224] → [N, D]`, e.g. torchvision's
//! ResNet-50 up to its average pool, as SceneSeg's `pre/place` runs it).
//!
//! The keyframe goes through torchvision's transforms as SceneSeg applies
//! them to a PIL image: `Resize(256)` (Pillow's bilinear filter, the
//! shorter side to 256), `CenterCrop(224)`, `ToTensor()` and ImageNet's
//! `Normalize`, in the same order and the same f32 arithmetic.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use ndarray::Array2;

use super::resize::pil_bilinear;

pub const RESIZE: usize = 256;
pub const CROP: usize = 224;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// torchvision's `Resize(256)` size for a `width × height` image: the
/// shorter side 256, the longer `int(256 · long / short)`.
pub fn resized_size(width: usize, height: usize) -> (usize, usize) {
    let (short, long) = (width.min(height), width.max(height));
    let long = (RESIZE as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (RESIZE, long)
    } else {
        (long, RESIZE)
    }
}

/// A BGR frame as the network's input: `3 × 224 × 224` f32, RGB planes.
pub fn input_tensor(bgr: &[u8], width: usize, height: usize) -> Vec<f32> {
    let (w, h) = resized_size(width, height);
    let resized = if (w, h) == (width, height) {
        bgr.to_vec()
    } else {
        pil_bilinear(bgr, width, height, w, h)
    };
    // torchvision's CenterCrop: int(round((size − 224) / 2.0)), Python's round.
    let offset = |size: usize| ((size - CROP) as f64 / 2.0).round_ties_even() as usize;
    let (top, left) = (offset(h), offset(w));
    let mut out = vec![0f32; 3 * CROP * CROP];
    for y in 0..CROP {
        for x in 0..CROP {
            let px = &resized[((top + y) * w + left + x) * 3..][..3];
            for c in 0..3 {
                // RGB plane c is BGR byte 2 − c.
                let v = f32::from(px[2 - c]) / 255.0;
                out[(c * CROP + y) * CROP + x] = (v - MEAN[c]) / STD[c];
            }
        }
    }
    out
}

/// Which runtime runs the place network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlaceRuntime {
    Tract,
    OrtCpu,
    OrtCuda,
}

impl PlaceRuntime {
    /// The best CPU runtime this build has, as `segment` picks: ONNX
    /// Runtime (measured 1.7× tract's speed on a ResNet-50), else tract.
    pub fn default_built() -> PlaceRuntime {
        if cfg!(feature = "ort") {
            PlaceRuntime::OrtCpu
        } else {
            PlaceRuntime::Tract
        }
    }
}

/// An image network, loaded once.
pub struct PlaceModel {
    path: PathBuf,
    batch: usize,
    runner: Runner,
}

enum Runner {
    #[cfg(feature = "tract")]
    Tract(std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>),
    #[cfg(feature = "ort")]
    Ort(Box<ort::session::Session>),
}

impl PlaceModel {
    /// Loads `path` for batches of `batch` images.
    pub fn open(
        path: &Path,
        runtime: PlaceRuntime,
        batch: usize,
        ort_lib: Option<&Path>,
    ) -> anyhow::Result<PlaceModel> {
        let bytes =
            crate::regular_file::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let batch = batch.max(1);
        let runner = match runtime {
            PlaceRuntime::Tract => open_tract(path, &bytes, batch)?,
            PlaceRuntime::OrtCpu | PlaceRuntime::OrtCuda => {
                open_ort(path, &bytes, runtime == PlaceRuntime::OrtCuda, ort_lib)?
            }
        };
        Ok(PlaceModel {
            path: path.to_path_buf(),
            batch,
            runner,
        })
    }

    /// One feature row an input (each [`input_tensor`]).
    pub fn features(&mut self, inputs: &[Vec<f32>]) -> anyhow::Result<Array2<f32>> {
        let mut rows: Vec<f32> = Vec::new();
        let mut dim = 0;
        for chunk in inputs.chunks(self.batch) {
            let mut data: Vec<f32> = Vec::with_capacity(self.batch * 3 * CROP * CROP);
            for x in chunk {
                data.extend_from_slice(x);
            }
            let (out, d) = self.run(data, chunk.len())?;
            dim = d;
            rows.extend_from_slice(&out[..chunk.len() * d]);
        }
        Array2::from_shape_vec((inputs.len(), dim), rows).map_err(|e| anyhow!("place features: {e}"))
    }

    /// Runs one batch of `n` images; the output rows and their width.
    fn run(&mut self, mut data: Vec<f32>, n: usize) -> anyhow::Result<(Vec<f32>, usize)> {
        let path = self.path.display().to_string();
        let (out, shape) = match &mut self.runner {
            #[cfg(feature = "tract")]
            Runner::Tract(plan) => {
                use tract_onnx::prelude::*;
                data.resize(self.batch * 3 * CROP * CROP, 0.0);
                let t = Tensor::from_shape(&[self.batch, 3, CROP, CROP], &data)
                    .map_err(|e| anyhow!("{path}: {e}"))?;
                let out = plan
                    .run(tvec!(t.into()))
                    .map_err(|e| anyhow!("{path}: tract: {e:#}"))?;
                let view = out[0]
                    .to_plain_array_view::<f32>()
                    .map_err(|e| anyhow!("{path}: {e}"))?;
                (view.iter().copied().collect::<Vec<f32>>(), view.shape().to_vec())
            }
            #[cfg(feature = "ort")]
            Runner::Ort(session) => {
                let input = ort::value::Tensor::from_array(([n, 3, CROP, CROP], data))
                    .map_err(|e| anyhow!("{path}: ONNX Runtime: {e}"))?;
                let out = session
                    .run(ort::inputs![input])
                    .map_err(|e| anyhow!("{path}: ONNX Runtime: {e}"))?;
                let (shape, values) = out[0]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| anyhow!("{path}: ONNX Runtime: {e}"))?;
                let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
                (values.to_vec(), shape)
            }
        };
        let _ = n;
        // [N, D], or [N, D, 1, 1] straight from an average pool.
        let rows = shape.first().copied().unwrap_or(0);
        let dim: usize = shape.iter().skip(1).product();
        if shape.len() < 2 || shape[2..].iter().any(|&d| d != 1) || rows == 0 || dim == 0 {
            bail!("{path}: the place model's output is {shape:?}: expected [N, D] features");
        }
        Ok((out, dim))
    }
}

#[cfg(feature = "tract")]
fn open_tract(path: &Path, bytes: &[u8], batch: usize) -> anyhow::Result<Runner> {
    use tract_onnx::prelude::*;
    let err = |e: TractError| anyhow!("{}: tract: {e:#}", path.display());
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| anyhow!("{}: not an ONNX model: {e:#}", path.display()))?
        .with_input_fact(0, f32::fact([batch, 3, CROP, CROP]).into())
        .map_err(err)?
        .into_optimized()
        .map_err(|e| {
            anyhow!(
                "{}: not an image model of [N, 3, {CROP}, {CROP}] input: {e:#}",
                path.display()
            )
        })?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let options = tract_onnx::tract_core::runtime::RunOptions {
        executor: (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads)),
        ..Default::default()
    };
    Ok(Runner::Tract(
        model.into_runnable_with_options(&options).map_err(err)?,
    ))
}

#[cfg(not(feature = "tract"))]
fn open_tract(_: &Path, _: &[u8], _: usize) -> anyhow::Result<Runner> {
    bail!("this build of lgss has no tract runtime (build with the `tract` feature)")
}

#[cfg(feature = "ort")]
fn open_ort(path: &Path, bytes: &[u8], cuda: bool, ort_lib: Option<&Path>) -> anyhow::Result<Runner> {
    let env = crate::runtime::ort_lib::init(ort_lib)?;
    let err = |e: ort::Error| anyhow!("{}: ONNX Runtime: {e}", path.display());
    let mut builder = ort::session::Session::builder(env).map_err(err)?;
    if cuda {
        let ep = ort::ep::CUDA::default().build().error_on_failure();
        builder = builder.with_execution_providers([ep]).map_err(|e| {
            anyhow!(
                "ort-cuda: the CUDA execution provider cannot be used: {}",
                ort::Error::<()>::from(e)
            )
        })?;
    }
    Ok(Runner::Ort(Box::new(
        builder.commit_from_memory(bytes).map_err(err)?,
    )))
}

#[cfg(not(feature = "ort"))]
fn open_ort(_: &Path, _: &[u8], _: bool, _: Option<&Path>) -> anyhow::Result<Runner> {
    bail!("this build of lgss has no ONNX Runtime (build with the `ort` feature)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_the_aspect_as_torchvision_does() {
        assert_eq!(resized_size(1920, 1080), (455, 256));
        assert_eq!(resized_size(1080, 1920), (256, 455));
        assert_eq!(resized_size(320, 240), (341, 256));
    }
}
