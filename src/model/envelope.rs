//! Which channels of the window conv can ever be the maximum.
//!
//! The context part of the boundary net is, per feature column,
//! `max_c (w_c·x + b_c)` over C affine functions of the column's k values.
//! Channel c can only win for some x if (w_c, b_c) is on the upper convex
//! hull of all (w_j, b_j). It never wins (the max is the same without it)
//! when some convex combination λ of the other channels has
//! `Σ λ_j w_j = w_c` and `Σ λ_j b_j ≥ b_c`, because then for every x,
//! `max_j (w_j·x + b_j) ≥ Σ λ_j (w_j·x + b_j) ≥ w_c·x + b_c`. By LP duality
//! that test is exact. With trained or initialised weights (C = 512, k = 4)
//! typically a third of the channels remain, so inference does a third of
//! the work. Training is unaffected (the weights change every step).

/// Channels that can be the maximum for some input, in increasing order.
/// `w`: `[C, k]` row-major, `b`: `[C]`.
pub fn active_channels(w: &[f32], b: &[f32], k: usize) -> Vec<usize> {
    let c = b.len();
    debug_assert_eq!(w.len(), c * k);
    let scale = w
        .iter()
        .chain(b)
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-30);
    (0..c)
        .filter(|&ch| {
            let others: Vec<usize> = (0..c).filter(|&j| j != ch).collect();
            // Rows: Σ λ_j w_j[i] = w_c[i] (i < k), Σ λ_j = 1.
            let rows: Vec<Vec<f64>> = (0..=k)
                .map(|i| {
                    others
                        .iter()
                        .map(|&j| if i < k { w[j * k + i] as f64 / scale } else { 1.0 })
                        .collect()
                })
                .collect();
            let rhs: Vec<f64> = (0..=k)
                .map(|i| if i < k { w[ch * k + i] as f64 / scale } else { 1.0 })
                .collect();
            let cost: Vec<f64> = others.iter().map(|&j| b[j] as f64 / scale).collect();
            match max_linear(&rows, &rhs, &cost) {
                None => true, // w_c is outside the others' hull: it wins far out.
                // Keep the channel unless it is dominated with a clear margin,
                // so rounding in the LP never drops a channel that can win.
                Some(best) => best < b[ch] as f64 / scale + 1e-9,
            }
        })
        .collect()
}

const EPS: f64 = 1e-12;

/// Maximises `cost·λ` subject to `rows λ = rhs`, `λ ≥ 0` (a bounded
/// problem here); `None` when infeasible. Dense two-phase simplex with
/// Bland's rule.
fn max_linear(rows: &[Vec<f64>], rhs: &[f64], cost: &[f64]) -> Option<f64> {
    let m = rows.len();
    let n = cost.len();
    // Tableau: n variables, m artificials, right-hand side.
    let width = n + m + 1;
    let mut t: Vec<Vec<f64>> = rows
        .iter()
        .zip(rhs)
        .enumerate()
        .map(|(i, (row, &r))| {
            let sign = if r < 0.0 { -1.0 } else { 1.0 };
            let mut line: Vec<f64> = row.iter().map(|v| v * sign).collect();
            line.extend((0..m).map(|a| if a == i { 1.0 } else { 0.0 }));
            line.push(r * sign);
            line
        })
        .collect();
    let mut basis: Vec<usize> = (n..n + m).collect();

    // Phase 1: maximise -Σ artificials.
    let phase1: Vec<f64> = (0..n + m).map(|j| if j >= n { -1.0 } else { 0.0 }).collect();
    simplex(&mut t, &mut basis, &phase1, n + m);
    let infeasibility: f64 = basis
        .iter()
        .zip(&t)
        .filter(|(&bv, _)| bv >= n)
        .map(|(_, row)| row[width - 1])
        .sum();
    if infeasibility > 1e-9 {
        return None;
    }
    // Drive artificials out of the basis (at zero level) where possible.
    for i in 0..m {
        if basis[i] >= n {
            if let Some(j) = (0..n).find(|&j| t[i][j].abs() > 1e-9) {
                pivot(&mut t, &mut basis, i, j);
            }
        }
    }
    // Phase 2 over the original variables only; rows whose artificial could
    // not leave are redundant and stay at zero.
    let mut phase2 = cost.to_vec();
    phase2.extend(std::iter::repeat_n(f64::NEG_INFINITY, m));
    simplex(&mut t, &mut basis, &phase2, n);
    Some(
        basis
            .iter()
            .zip(&t)
            .map(|(&bv, row)| if bv < n { cost[bv] * row[width - 1] } else { 0.0 })
            .sum(),
    )
}

/// Pivots until no entering column (among the first `allowed`) improves `obj`.
fn simplex(t: &mut [Vec<f64>], basis: &mut [usize], obj: &[f64], allowed: usize) {
    let width = t[0].len();
    let basic_cost = |bv: usize| if obj[bv].is_finite() { obj[bv] } else { 0.0 };
    for _ in 0..10_000 {
        // Reduced cost of column j: obj_j - Σ_i c_B(i) t[i][j].
        let entering = (0..allowed).find(|&j| {
            if basis.contains(&j) {
                return false;
            }
            let z: f64 = basis
                .iter()
                .zip(t.iter())
                .map(|(&bv, row)| basic_cost(bv) * row[j])
                .sum();
            obj[j] - z > EPS
        });
        let Some(j) = entering else { return };
        // Ratio test, ties broken by the smallest basic index (Bland).
        let mut leave: Option<(usize, f64)> = None;
        for (i, row) in t.iter().enumerate() {
            if row[j] > EPS {
                let ratio = row[width - 1] / row[j];
                let better = match leave {
                    None => true,
                    Some((li, lr)) => ratio < lr - EPS || (ratio <= lr + EPS && basis[i] < basis[li]),
                };
                if better {
                    leave = Some((i, ratio));
                }
            }
        }
        let Some((i, _)) = leave else { return }; // unbounded: not in our problems
        pivot(t, basis, i, j);
    }
}

fn pivot(t: &mut [Vec<f64>], basis: &mut [usize], i: usize, j: usize) {
    let p = t[i][j];
    for v in t[i].iter_mut() {
        *v /= p;
    }
    let pivot_row = t[i].clone();
    for (r, row) in t.iter_mut().enumerate() {
        if r != i && row[j] != 0.0 {
            let f = row[j];
            for (v, pv) in row.iter_mut().zip(&pivot_row) {
                *v -= f * pv;
            }
        }
    }
    basis[i] = j;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pruned max equals the full max on many random columns, and the
    /// pruning is substantial.
    #[test]
    fn pruned_channels_give_the_same_max() {
        let mut rng = crate::rng::Rng::new(1);
        let (c, k) = (256, 4);
        let bound = 0.5;
        let w: Vec<f32> = (0..c * k)
            .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let b: Vec<f32> = (0..c)
            .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let active = active_channels(&w, &b, k);
        assert!(active.len() < c / 2, "{} of {c} channels kept", active.len());
        let value =
            |ch: usize, x: &[f64]| (0..k).map(|i| w[ch * k + i] as f64 * x[i]).sum::<f64>() + b[ch] as f64;
        for trial in 0..20_000 {
            let scale = if trial % 2 == 0 { 1.0 } else { 100.0 };
            let x: Vec<f64> = (0..k).map(|_| rng.normal() * scale).collect();
            let full = (0..c).map(|ch| value(ch, &x)).fold(f64::NEG_INFINITY, f64::max);
            let pruned = active
                .iter()
                .map(|&ch| value(ch, &x))
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(
                (full - pruned).abs() <= 1e-12 * full.abs().max(1.0),
                "x {x:?}: {full} vs {pruned}"
            );
        }
    }

    /// A channel below another everywhere is dropped; hull vertices stay.
    #[test]
    fn dominated_channel_is_dropped() {
        // k = 1: lines 0x+1, 1x+0, -1x+0 and 0x+0.5 (below the first).
        let w = [0.0, 1.0, -1.0, 0.0];
        let b = [1.0, 0.0, 0.0, 0.5];
        assert_eq!(active_channels(&w, &b, 1), vec![0, 1, 2]);
    }
}
