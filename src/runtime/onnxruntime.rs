//! The `ort-cpu` and `ort-cuda` runtimes: the ONNX file in ONNX Runtime.
//! CUDA goes through the CUDA execution provider registered with
//! `error_on_failure()`; otherwise ONNX Runtime silently falls back to CPU.
//! The EP uses TF32 only when asked (`RuntimeOptions::tf32`), so its results
//! agree with the CPU's; cuDNN picks conv algorithms by heuristic, which is
//! deterministic and skips the exhaustive benchmark at start-up.

use std::path::Path;

use anyhow::anyhow;
use ort::session::Session;
use ort::value::TensorRef;

use super::{onnx_meta, ort_lib, Backend, RuntimeOptions};
use crate::model::config::ModelConfig;

pub struct OrtBackend {
    session: Session,
    config: ModelConfig,
    name: &'static str,
}

impl OrtBackend {
    pub fn open(model: &Path, cuda: bool, opts: &RuntimeOptions) -> anyhow::Result<OrtBackend> {
        let config = onnx_meta::config_of(model)?;
        let env = ort_lib::init(opts.ort_lib.as_deref())?;
        let err = |e: ort::Error| anyhow!("{}: ONNX Runtime: {e}", model.display());
        let mut builder = Session::builder(env).map_err(err)?;
        if let Some(t) = opts.threads {
            builder = builder.with_intra_threads(t).map_err(|e| err(e.into()))?;
        }
        if cuda {
            let ep = ort::ep::CUDA::default()
                .with_tf32(opts.tf32)
                .with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Heuristic)
                .build()
                .error_on_failure();
            builder = builder.with_execution_providers([ep]).map_err(|e| {
                anyhow!(
                    "ort-cuda: the CUDA execution provider cannot be used: {}",
                    ort::Error::<()>::from(e)
                )
            })?;
        }
        let session = builder.commit_from_file(model).map_err(err)?;
        Ok(OrtBackend {
            session,
            config,
            name: if cuda { "ort-cuda" } else { "ort-cpu" },
        })
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &str {
        self.name
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn run(&mut self, inputs: &[ndarray::ArrayView4<'_, f32>]) -> anyhow::Result<Vec<f32>> {
        let c = &self.config;
        super::checked_inputs(c, inputs)?;
        let mut values = Vec::with_capacity(inputs.len());
        // The graph's inputs are named after the modalities (onnx::export);
        // ONNX Runtime reads the caller's arrays in place.
        for (&m, x) in c.modalities.iter().zip(inputs) {
            let t = TensorRef::from_array_view(x.view()).map_err(|e| anyhow!("ort input {m}: {e}"))?;
            values.push((
                std::borrow::Cow::from(m.key()),
                ort::session::SessionInputValue::from(t),
            ));
        }
        let outputs = self.session.run(values).map_err(|e| anyhow!("ort run: {e}"))?;
        let (_, prob) = outputs["prob"]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow!("ort output: {e}"))?;
        Ok(prob.to_vec())
    }
}
