//! The geometry of SceneSeg's audio CNN (`audnet` in its
//! `lgss/src/models/lgss.py`): what the libtorch network and the ONNX
//! export both build, kept apart from either so the inference-only build
//! has it without libtorch.

/// BatchNorm2d's defaults in PyTorch.
pub const BN_MOMENTUM: f64 = 0.1;
pub const BN_EPS: f64 = 1e-5;

/// One block's geometry: conv kernel and stride, then an optional max pool
/// (kernel = stride, PyTorch's default). Fixed by SceneSeg's `audnet`.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub pool: Option<[i64; 2]>,
}

pub const BLOCKS: [Block; 6] = [
    Block {
        kernel: [3, 3],
        stride: [2, 1],
        pool: Some([1, 3]),
    },
    Block {
        kernel: [3, 3],
        stride: [2, 1],
        pool: None,
    },
    Block {
        kernel: [3, 3],
        stride: [2, 1],
        pool: None,
    },
    Block {
        kernel: [3, 3],
        stride: [2, 2],
        pool: None,
    },
    Block {
        kernel: [3, 3],
        stride: [2, 2],
        pool: Some([2, 2]),
    },
    Block {
        kernel: [3, 2],
        stride: [1, 1],
        pool: None,
    },
];

/// The spatial size after each block for an input of `shape`: SceneSeg's
/// 257×90 ends at 1×1, which is what lets its fc take the channels alone.
pub fn block_sizes(shape: [usize; 2]) -> Vec<[i64; 2]> {
    let mut hw = [shape[0] as i64, shape[1] as i64];
    BLOCKS
        .iter()
        .map(|b| {
            for a in 0..2 {
                hw[a] = (hw[a] - b.kernel[a]) / b.stride[a] + 1;
                if let Some(p) = b.pool {
                    hw[a] /= p[a];
                }
            }
            hw
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::AudioInput;

    #[test]
    fn scenesegs_image_ends_at_one_by_one() {
        let sizes = block_sizes(AudioInput::STFT_SHAPE);
        assert_eq!(
            sizes,
            vec![[128, 29], [63, 27], [31, 25], [15, 12], [3, 2], [1, 1]]
        );
    }
}
