//! Resizing 3-channel 8-bit images as the reference tools do: Pillow's
//! bilinear filter (what torchvision's `Resize` runs on a PIL image), and
//! OpenCV's `INTER_LINEAR` (what PySceneDetect shrinks frames with).

/// Pillow's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's filter weights of one axis: for each output sample, the first
/// input sample and its weights (normalised, then in fixed point).
fn pil_coefficients(in_size: usize, out_size: usize) -> (usize, Vec<(usize, Vec<i32>)>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support is 1
    let ksize = support.ceil() as usize * 2 + 1;
    let taps = (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) cast truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    if scaled < 0.0 {
                        (scaled - 0.5) as i32
                    } else {
                        (scaled + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect();
    (ksize, taps)
}

fn clip8(ss: i64) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize(size, Image.BILINEAR)` of a 3-channel image:
/// the horizontal pass first (rows the vertical pass uses only), rounded
/// to 8 bits, then the vertical pass.
pub fn pil_bilinear(src: &[u8], width: usize, height: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    let (_, htaps) = pil_coefficients(width, out_w);
    let (_, vtaps) = pil_coefficients(height, out_h);
    let need_h = out_w != width;
    let need_v = out_h != height;
    let (rows_first, rows_last) = match (vtaps.first(), vtaps.last()) {
        (Some(f), Some(l)) => (f.0, l.0 + l.1.len()),
        _ => (0, 0),
    };
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass over the rows the vertical pass reads.
    let (mid, mid_first) = if need_h {
        let mut mid = vec![0u8; (rows_last - rows_first) * out_w * 3];
        for (r, y) in (rows_first..rows_last).enumerate() {
            let row = &src[y * width * 3..(y + 1) * width * 3];
            let out = &mut mid[r * out_w * 3..(r + 1) * out_w * 3];
            for (xx, (xmin, k)) in htaps.iter().enumerate() {
                for c in 0..3 {
                    let mut ss = half;
                    for (i, &w) in k.iter().enumerate() {
                        ss += i64::from(row[(xmin + i) * 3 + c]) * i64::from(w);
                    }
                    out[xx * 3 + c] = clip8(ss);
                }
            }
        }
        (mid, rows_first)
    } else {
        (src.to_vec(), 0)
    };
    if !need_v {
        return mid;
    }
    let mut out = vec![0u8; out_h * out_w * 3];
    for (yy, (ymin, k)) in vtaps.iter().enumerate() {
        let line = &mut out[yy * out_w * 3..(yy + 1) * out_w * 3];
        for (x, px) in line.iter_mut().enumerate() {
            let mut ss = half;
            for (i, &w) in k.iter().enumerate() {
                ss += i64::from(mid[(ymin - mid_first + i) * out_w * 3 + x]) * i64::from(w);
            }
            *px = clip8(ss);
        }
    }
    out
}

/// OpenCV's `INTER_LINEAR` shrink of a 3-channel image into `out`: each
/// output pixel from the two nearest source pixels per axis, weights in
/// 11-bit fixed point. OpenCV's vectorised paths may round single pixels
/// differently; detection only differences frames of the same size.
pub fn bilinear_opencv(
    src: &[u8],
    width: usize,
    height: usize,
    out_w: usize,
    out_h: usize,
    out: &mut Vec<u8>,
) {
    const COEF_BITS: u32 = 11;
    let coef_scale = f32::from(1u16 << COEF_BITS);
    let axis = |in_size: usize, out_size: usize| -> Vec<(usize, [i32; 2])> {
        let scale = in_size as f64 / out_size as f64;
        (0..out_size)
            .map(|d| {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let mut s = f.floor() as i64;
                let mut f = f - s as f32;
                if s < 0 {
                    s = 0;
                    f = 0.0;
                }
                if s >= in_size as i64 - 1 {
                    s = in_size as i64 - 1;
                    f = 0.0;
                }
                let w0 = ((1.0 - f) * coef_scale).round_ties_even() as i32;
                let w1 = (f * coef_scale).round_ties_even() as i32;
                (s as usize, [w0, w1])
            })
            .collect()
    };
    let xs = axis(width, out_w);
    let ys = axis(height, out_h);
    out.clear();
    out.resize(out_w * out_h * 3, 0);
    let at = |y: usize, x: usize, c: usize| i64::from(src[(y * width + x.min(width - 1)) * 3 + c]);
    for (oy, &(sy, [b0, b1])) in ys.iter().enumerate() {
        let sy1 = (sy + 1).min(height - 1);
        for (ox, &(sx, [a0, a1])) in xs.iter().enumerate() {
            for c in 0..3 {
                let h0 = at(sy, sx, c) * i64::from(a0) + at(sy, sx + 1, c) * i64::from(a1);
                let h1 = at(sy1, sx, c) * i64::from(a0) + at(sy1, sx + 1, c) * i64::from(a1);
                let v = h0 * i64::from(b0) + h1 * i64::from(b1);
                let bits = 2 * COEF_BITS;
                out[(oy * out_w + ox) * 3 + c] = ((v + (1 << (bits - 1))) >> bits).clamp(0, 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_stays_flat_at_any_size() {
        let src = vec![77u8; 40 * 30 * 3];
        assert!(pil_bilinear(&src, 40, 30, 17, 9).iter().all(|&p| p == 77));
        let mut out = Vec::new();
        bilinear_opencv(&src, 40, 30, 17, 9, &mut out);
        assert!(out.iter().all(|&p| p == 77));
    }
}
