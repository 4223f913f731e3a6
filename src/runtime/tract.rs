//! The `tract` runtime: the ONNX file as an optimised tract plan.
//!
//! tract 0.23.9 panics on an LSTM whose batch dimension is symbolic, so the
//! plan is compiled for a fixed batch and shorter batches are zero-padded
//! (zero windows are well defined: cosine similarity clamps the norm).

use std::path::Path;

use anyhow::anyhow;
use tract_onnx::prelude::*;

use super::{onnx_meta, Backend};
use crate::model::config::ModelConfig;

type Plan = std::sync::Arc<TypedRunnableModel>;

pub struct TractBackend {
    plan: Plan,
    config: ModelConfig,
    batch: usize,
}

impl TractBackend {
    pub fn open(model: &Path, batch: usize) -> anyhow::Result<(TractBackend, ModelConfig)> {
        let config = onnx_meta::config_of(model)?;
        let err = |e: TractError| anyhow!("{}: tract: {e:#}", model.display());
        let mut m = tract_onnx::onnx().model_for_path(model).map_err(err)?;
        for (i, &md) in config.modalities.iter().enumerate() {
            let shape = [
                batch,
                config.seq_len,
                config.shot_num,
                config.feature_dims.get(md),
            ];
            m = m.with_input_fact(i, f32::fact(shape).into()).map_err(err)?;
        }
        let plan = m.into_optimized().map_err(err)?.into_runnable().map_err(err)?;
        Ok((
            TractBackend {
                plan,
                config: config.clone(),
                batch,
            },
            config,
        ))
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &str {
        "tract"
    }

    fn run(&mut self, batch: usize, inputs: &[Vec<f32>]) -> anyhow::Result<Vec<f32>> {
        let c = &self.config;
        anyhow::ensure!(
            batch <= self.batch,
            "tract plan is for {} sequences, got {batch}",
            self.batch
        );
        let mut values: TVec<TValue> = TVec::new();
        for (&m, data) in c.modalities.iter().zip(inputs) {
            let shape = [self.batch, c.seq_len, c.shot_num, c.feature_dims.get(m)];
            let mut padded = data.clone();
            padded.resize(shape.iter().product(), 0.0);
            let t = Tensor::from_shape(&shape, &padded).map_err(|e| anyhow!("tract input: {e}"))?;
            values.push(t.into());
        }
        let out = self.plan.run(values).map_err(|e| anyhow!("tract run: {e:#}"))?;
        let prob = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| anyhow!("tract output: {e}"))?;
        Ok(prob.iter().take(batch * c.seq_len).copied().collect())
    }
}
