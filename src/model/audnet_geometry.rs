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

/// Each block's spatial size for an input of `shape`: its conv's output
/// (what it holds before pooling) and the block's output. SceneSeg's
/// 257×90 ends at 1×1, which is what lets its fc take the channels alone.
pub fn block_sizes(shape: [usize; 2]) -> Vec<([i64; 2], [i64; 2])> {
    let mut hw = [shape[0] as i64, shape[1] as i64];
    BLOCKS
        .iter()
        .map(|b| {
            let conv = [0, 1].map(|a| (hw[a] - b.kernel[a]) / b.stride[a] + 1);
            hw = match b.pool {
                Some(p) => [conv[0] / p[0], conv[1] / p[1]],
                None => conv,
            };
            (conv, hw)
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
        let out: Vec<[i64; 2]> = sizes.iter().map(|s| s.1).collect();
        assert_eq!(out, vec![[128, 29], [63, 27], [31, 25], [15, 12], [3, 2], [1, 1]]);
        // Before their pools, the first and fifth convs hold more.
        assert_eq!((sizes[0].0, sizes[4].0), ([128, 88], [7, 5]));
    }
}
