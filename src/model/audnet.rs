//! SceneSeg's audio network in libtorch: a shot's 257×90 STFT image through
//! six Conv2d + BatchNorm2d + ReLU blocks (max pools after the first and
//! fifth) down to 1×1, then an fc. Variable names are PyTorch's
//! (`….audnet.conv1.weight`, `….audnet.bn1.running_mean`, …), so SceneSeg's
//! checkpoints load by name.

use tch::{nn, Kind, Tensor};

use super::audnet_geometry::{BLOCKS, BN_EPS, BN_MOMENTUM};
use super::config::AudioInput;

/// One Conv2d + BatchNorm2d pair.
#[derive(Debug)]
struct ConvBn {
    conv_w: Tensor,
    conv_b: Tensor,
    bn_w: Tensor,
    bn_b: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    batches_tracked: Tensor,
}

/// The network's variables.
#[derive(Debug)]
pub struct AudNet {
    blocks: Vec<ConvBn>,
    fc_w: Tensor,
    fc_b: Tensor,
}

impl AudNet {
    /// New variables under `p` with PyTorch's default initialisation
    /// (convs and the fc uniform in ±1/sqrt(fan_in); BatchNorm weight 1,
    /// bias 0, running mean 0, running variance 1).
    pub fn new(p: &nn::Path<'_>, channels: &[usize; 6]) -> AudNet {
        let uniform = |fan_in: i64| {
            let b = 1.0 / (fan_in as f64).sqrt();
            nn::Init::Uniform { lo: -b, up: b }
        };
        let mut in_ch = 1i64;
        let blocks = BLOCKS
            .iter()
            .zip(channels)
            .enumerate()
            .map(|(i, (b, &out))| {
                let out = out as i64;
                let fan_in = in_ch * b.kernel[0] * b.kernel[1];
                let conv = p.sub(format!("conv{}", i + 1));
                let bn = p.sub(format!("bn{}", i + 1));
                let block = ConvBn {
                    conv_w: conv.var("weight", &[out, in_ch, b.kernel[0], b.kernel[1]], uniform(fan_in)),
                    conv_b: conv.var("bias", &[out], uniform(fan_in)),
                    bn_w: bn.var("weight", &[out], nn::Init::Const(1.0)),
                    bn_b: bn.var("bias", &[out], nn::Init::Const(0.0)),
                    running_mean: bn.zeros_no_train("running_mean", &[out]),
                    running_var: bn.ones_no_train("running_var", &[out]),
                    batches_tracked: bn.add(
                        "num_batches_tracked",
                        Tensor::zeros([], (Kind::Int64, p.device())),
                        false,
                    ),
                };
                in_ch = out;
                block
            })
            .collect();
        let width = channels[5] as i64;
        let fc = p.sub("fc");
        AudNet {
            blocks,
            fc_w: fc.var("weight", &[width, width], uniform(width)),
            fc_b: fc.var("bias", &[width], uniform(width)),
        }
    }

    /// Embeds `x` (`[n, 257·90]`, each row a flattened image) as `[n, C₆]`.
    /// `train`: BatchNorm normalises by the batch's statistics and updates
    /// the running ones (momentum 0.1, unbiased variance, as PyTorch in
    /// `model.train()`); otherwise it uses the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let [h, w] = AudioInput::STFT_SHAPE.map(|d| d as i64);
        let mut y = x.view([-1, 1, h, w]);
        for (b, v) in BLOCKS.iter().zip(&self.blocks) {
            y = y.conv2d(&v.conv_w, Some(&v.conv_b), b.stride, [0, 0], [1, 1], 1);
            y = y
                .batch_norm(
                    Some(&v.bn_w),
                    Some(&v.bn_b),
                    Some(&v.running_mean),
                    Some(&v.running_var),
                    train,
                    BN_MOMENTUM,
                    BN_EPS,
                    true,
                )
                .relu();
            if train {
                tch::no_grad(|| {
                    let mut t = v.batches_tracked.shallow_clone();
                    let _ = t.g_add_scalar_(1);
                });
            }
            if let Some(k) = b.pool {
                y = y.max_pool2d(k, k, [0, 0], [1, 1], false);
            }
        }
        let n = y.size()[0];
        y.view([n, -1]).linear(&self.fc_w, Some(&self.fc_b))
    }
}
