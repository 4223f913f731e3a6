//! `lgss verify`: the same movies through several runtimes; they must agree
//! under the rule of [`crate::agreement`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use serde::Serialize;

use crate::agreement::{compare, max_dp_bound, Agreement, MoviePair};
use crate::data::dataset::movie_files;
use crate::data::movie::{Movie, Schema};
use crate::metrics::{evaluate, MovieBoundaries, Scores};
use crate::runtime::{open, RuntimeKind};
use crate::sceneseg_metrics::SceneSegScores;
use crate::segment::movie_probabilities;

use super::segment::ModelArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of tt*.pkl movies with ground truth.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Runtimes to compare; the first is the reference (default: the CPU
    /// runtimes this build has, of tch, ort-cpu and tract).
    #[arg(long, value_delimiter = ',')]
    runtimes: Vec<RuntimeKind>,
    /// Largest allowed max|Δp| against the first runtime (default 1e-5, or
    /// ~0.08 with --tf32: see the book's "Do the runtimes agree?").
    #[arg(long)]
    max_dp: Option<f64>,
    /// Also require |ΔAP| and |ΔMiou| ≤ this, on top of the derived rule.
    #[arg(long)]
    tolerance: Option<f64>,
    #[arg(long)]
    json: bool,
    /// Also score every runtime as SceneSeg's final test does (the paper's
    /// AP, mAP, Miou, Recall, Recall@3s; cuts at p > 0.5) and require its
    /// cuts to differ from the first runtime's only where max|Δp| reaches
    /// the threshold (identical scores otherwise).
    #[arg(long)]
    sceneseg: bool,
    /// How scenes are decided: global grouping by default (at the model's
    /// threshold, as `segment` does), whose cuts the runtimes must decide
    /// alike wherever their max|Δp| cannot explain a difference; `--local`
    /// compares the threshold rule's decisions only.
    #[command(flatten)]
    rule: super::segment::RuleArgs,
}

/// Global grouping's results for one runtime.
#[derive(Debug, Serialize)]
pub struct GlobalRow {
    /// The scores of the grouped probabilities.
    pub scores: Scores,
    /// Boundaries this runtime's grouping decides unlike the first's.
    pub differing_cuts: Vec<DifferingCut>,
    /// Differences from the first runtime's grouping that its max|Δp|
    /// cannot explain; empty when they agree.
    pub unexplained: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DifferingCut {
    pub imdb_id: String,
    pub boundary: usize,
    /// Whether the first runtime's grouping cuts here.
    pub reference_cut: bool,
    /// How much worse (in the objective) the best partition deciding this
    /// boundary the other way is, with the first runtime's probabilities.
    pub margin: f64,
    /// How far this runtime's probabilities can move any two partitions'
    /// objectives apart ([`crate::grouping::objective_shift`] over the
    /// movie): the difference is explained when `margin` is within it.
    pub explainable: f64,
}

/// SceneSeg's scores of one runtime, and what ε cannot explain in them.
#[derive(Debug, Serialize)]
pub struct SceneSegRow {
    pub scores: SceneSegScores,
    /// Boundaries cut (p > 0.5) by one of this runtime and the first only.
    pub differing_cuts: usize,
    pub unexplained: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub runtime: String,
    /// Why the runtime could not be used, if it could not.
    pub error: Option<String>,
    /// The challenge's scores of this runtime's predictions.
    pub scores: Option<Scores>,
    pub max_abs_dp: f64,
    pub flips: usize,
    /// Whether this runtime computed with TF32 (CUDA runtimes with --tf32).
    pub tf32: bool,
    /// What its difference from the first runtime explains (None for the first).
    pub agreement: Option<Agreement>,
    /// Global grouping's scores and differing cuts (absent with `--local`).
    pub global: Option<GlobalRow>,
    /// SceneSeg's scores (with `--sceneseg`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sceneseg: Option<SceneSegRow>,
    pub seconds: f64,
    pub windows_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub movies: usize,
    pub windows: usize,
    /// `global` (grouped decisions are compared too) or `local`.
    pub rule: &'static str,
    /// Global grouping's settings, with the first runtime's model's choices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<crate::grouping::Params>,
    pub max_dp_bound: f64,
    pub tolerance: Option<f64>,
    pub rows: Vec<Row>,
    pub ok: bool,
}

pub fn verify(
    args: &Args,
    ort_lib: Option<&Path>,
    ws: &super::workspace::Workspace,
) -> anyhow::Result<Report> {
    let runtimes = if args.runtimes.is_empty() {
        RuntimeKind::cpu_built()
    } else {
        args.runtimes.clone()
    };
    if runtimes.is_empty() {
        bail!("this build of lgss has no runtime to verify");
    }
    let tf32 = args.model.tf32 && runtimes.iter().any(|r| r.is_cuda());
    let bound = args.max_dp.unwrap_or_else(|| max_dp_bound(tf32));
    let files = movie_files(&args.data)?;
    let mut movies: Option<Vec<Movie>> = None;
    // The first runtime's probabilities and scores: what the others must match.
    let mut reference: Option<(Vec<Vec<f64>>, Scores)> = None;
    // Global grouping's settings, with the first runtime's model's prior.
    let mut global: Option<crate::grouping::Params> = None;
    // Per movie: descriptors, and the first runtime's cuts.
    let mut descriptors: Vec<crate::grouping::Descriptors> = Vec::new();
    let mut reference_cuts: Option<(Vec<Vec<bool>>, Scores)> = None;
    let mut reference_sceneseg: Option<SceneSegScores> = None;
    let mut rows = Vec::new();
    let mut ok = true;
    let mut windows = 0;
    for &kind in &runtimes {
        let opened = args.model.options(ort_lib, ws, &[kind]).and_then(|o| {
            if !args.rule.local && global.is_none() {
                // As segment groups: at the model's threshold, with its choices.
                let stored = super::segment::stored_choices(kind, &o)?;
                global = args.rule.params(stored.threshold.unwrap_or(0.5), &stored);
            }
            open(kind, &o)
        });
        let mut backend = match opened {
            Ok(x) => x,
            Err(e) => {
                ok = false;
                rows.push(Row {
                    runtime: kind.to_string(),
                    error: Some(format!("{e:#}")),
                    scores: None,
                    max_abs_dp: f64::NAN,
                    flips: 0,
                    tf32: false,
                    agreement: None,
                    global: None,
                    sceneseg: None,
                    seconds: 0.0,
                    windows_per_s: 0.0,
                });
                continue;
            }
        };
        if movies.is_none() {
            let schema = Schema {
                require_ground_truth: true,
                ..crate::segment::schema_for(backend.config())
            };
            let pb = super::progress::bar(files.len(), "load");
            movies = Some(crate::data::dataset::load_all(&files, &schema, &|| pb.inc(1))?);
            pb.finish_and_clear();
        }
        let movies = movies.as_deref().unwrap_or_default();
        let pb = super::progress::bar(movies.len(), kind.name());
        let t0 = Instant::now();
        let mut probs = Vec::with_capacity(movies.len());
        for m in movies {
            probs.push(movie_probabilities(backend.as_mut(), m, args.model.batch)?);
            pb.inc(1);
        }
        let seconds = t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        windows = probs.iter().map(Vec::len).sum();
        let s = score(movies, &probs)?;
        let agreement = reference.as_ref().map(|(ref_probs, ref_scores)| {
            let pairs: Vec<MoviePair> = movies
                .iter()
                .zip(ref_probs.iter().zip(&probs))
                .map(|(m, (r, o))| MoviePair {
                    imdb_id: &m.imdb_id,
                    ground_truth: m.ground_truth.as_deref().unwrap_or_default(),
                    reference: r,
                    other: o,
                })
                .collect();
            compare(&pairs, ref_scores, &s, bound)
        });
        if let Some(a) = &agreement {
            ok &= a.ok();
        }
        if let (Some(t), Some((_, first))) = (args.tolerance, &reference) {
            if (first.ap - s.ap).abs() > t || (first.miou - s.miou).abs() > t {
                ok = false;
            }
        }
        let global_row = match &global {
            Some(params) => {
                if descriptors.is_empty() {
                    let weights = backend.config().ratio;
                    descriptors = movies
                        .iter()
                        .map(|m| crate::grouping::descriptors(m, &weights))
                        .collect();
                }
                let first = reference_cuts
                    .as_ref()
                    .zip(reference.as_ref())
                    .map(|((cuts, scores), (probs, _))| (cuts.as_slice(), probs.as_slice(), scores));
                let (row, cuts) = group_all(movies, &probs, &descriptors, params, first)?;
                ok &= row.unexplained.is_empty();
                if reference_cuts.is_none() {
                    reference_cuts = Some((cuts, row.scores.clone()));
                }
                Some(row)
            }
            None => None,
        };
        let sceneseg_row = if args.sceneseg {
            let first = reference.as_ref().map(|(p, _)| p.as_slice());
            let eps = agreement.as_ref().map_or(0.0, |a| a.max_abs_dp);
            let row = sceneseg_row(movies, &probs, first.zip(reference_sceneseg.as_ref()), eps)?;
            ok &= row.unexplained.is_empty();
            if reference_sceneseg.is_none() {
                reference_sceneseg = Some(row.scores.clone());
            }
            Some(row)
        } else {
            None
        };
        let row = Row {
            runtime: kind.to_string(),
            error: None,
            global: global_row,
            sceneseg: sceneseg_row,
            max_abs_dp: agreement.as_ref().map_or(0.0, |a| a.max_abs_dp),
            flips: agreement.as_ref().map_or(0, |a| a.flips),
            tf32: args.model.tf32 && kind.is_cuda(),
            agreement,
            scores: Some(s.clone()),
            seconds,
            windows_per_s: windows as f64 / seconds,
        };
        if reference.is_none() {
            reference = Some((probs, s));
        }
        rows.push(row);
    }
    Ok(Report {
        movies: files.len(),
        windows,
        rule: crate::segment::rule_name(global.as_ref()),
        global,
        max_dp_bound: bound,
        tolerance: args.tolerance,
        rows,
        ok,
    })
}

/// `probs[i]` as movie i's predictions, on every boundary: runtimes are
/// compared on all of them, scored or not.
fn every_boundary<'a>(movies: &'a [Movie], probs: &'a [Vec<f64>]) -> Vec<MovieBoundaries<'a>> {
    movies
        .iter()
        .zip(probs)
        .map(|(m, p)| MovieBoundaries {
            imdb_id: &m.imdb_id,
            ground_truth: m.ground_truth.as_deref().unwrap_or_default(),
            prediction: p,
            shot_end_frame: &m.shot_end_frame,
            scored: None,
        })
        .collect()
}

/// The challenge's scores of `probs[i]` as movie i's predictions.
fn score(movies: &[Movie], probs: &[Vec<f64>]) -> anyhow::Result<Scores> {
    Ok(evaluate(&every_boundary(movies, probs))?)
}

/// SceneSeg's scores of `probs` (every boundary, as runtimes are compared)
/// and, against the first runtime's probabilities and scores, what a
/// max|Δp| of `eps` cannot explain: a cut (float32(p) > 0.5) decided
/// differently where neither probability is within `eps` of 0.5, or other
/// scores although no cut differs.
fn sceneseg_row(
    movies: &[Movie],
    probs: &[Vec<f64>],
    first: Option<(&[Vec<f64>], &SceneSegScores)>,
    eps: f64,
) -> anyhow::Result<SceneSegRow> {
    let scores = crate::sceneseg_metrics::evaluate(&every_boundary(movies, probs))?;
    let mut row = SceneSegRow {
        scores,
        differing_cuts: 0,
        unexplained: Vec::new(),
    };
    let Some((first_probs, first_scores)) = first else {
        return Ok(row);
    };
    let cut = crate::sceneseg_metrics::is_cut;
    for ((m, a), b) in movies.iter().zip(first_probs).zip(probs) {
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            if cut(x) != cut(y) {
                row.differing_cuts += 1;
                if (x - crate::sceneseg_metrics::THRESHOLD).abs() > eps {
                    row.unexplained.push(format!(
                        "{} boundary {i}: SceneSeg's cut differs at p {x:.9} vs {y:.9}, not within max|Δp| {eps:.2e} of 0.5",
                        m.imdb_id
                    ));
                }
            }
        }
    }
    let s = &row.scores;
    let f = first_scores;
    if row.differing_cuts == 0 && (s.miou != f.miou || s.recall != f.recall || s.recall_time != f.recall_time)
    {
        row.unexplained
            .push("SceneSeg's Miou/Recall/Recall@3s differ although every cut is decided alike".into());
    }
    Ok(row)
}

/// The first runtime's cuts, probabilities and grouped scores, per movie.
type GroupedReference<'a> = (&'a [Vec<bool>], &'a [Vec<f64>], &'a Scores);

/// Groups every movie; compares with the first runtime's cuts where there
/// are. A cut decided differently is explained only where the first
/// runtime's decision margin is within what the change of probabilities
/// can move it ([`crate::grouping::objective_shift`]); a movie whose cuts
/// all agree must score identically.
fn group_all(
    movies: &[Movie],
    probs: &[Vec<f64>],
    descriptors: &[crate::grouping::Descriptors],
    params: &crate::grouping::Params,
    reference: Option<GroupedReference<'_>>,
) -> anyhow::Result<(GlobalRow, Vec<Vec<bool>>)> {
    let mut all_cuts = Vec::with_capacity(movies.len());
    let mut grouped = Vec::with_capacity(movies.len());
    let mut differing_cuts = Vec::new();
    let mut unexplained = Vec::new();
    for (i, (m, p)) in movies.iter().zip(probs).enumerate() {
        let g = crate::grouping::group(p, &descriptors[i], params)?;
        if let Some((rc, rp, _)) = reference {
            let explainable = crate::grouping::objective_shift(&rp[i], p);
            for (b, (&mine, &theirs)) in g.cuts.iter().zip(&rc[i]).enumerate() {
                if mine != theirs {
                    let margin = crate::grouping::margin(&rp[i], &descriptors[i], params, b)?;
                    // The margin is a difference of two sums over the
                    // movie, each rounded in f64: allow for that.
                    let roundoff = 8.0 * f64::EPSILON * p.len() as f64 * (1.0 + margin);
                    if margin > explainable + roundoff {
                        unexplained.push(format!(
                            "{}: boundary {b} grouped differently with margin {margin:.3e}, more than the {explainable:.3e} its probabilities explain",
                            m.imdb_id
                        ));
                    }
                    differing_cuts.push(DifferingCut {
                        imdb_id: m.imdb_id.clone(),
                        boundary: b,
                        reference_cut: theirs,
                        margin,
                        explainable,
                    });
                }
            }
        }
        grouped.push(crate::grouping::grouped_probabilities(p, &g.cuts));
        all_cuts.push(g.cuts);
    }
    let scores = score(movies, &grouped)?;
    if let Some((rc, _, reference_scores)) = reference {
        for (m, (mine, theirs)) in movies.iter().zip(all_cuts.iter().zip(rc)) {
            if mine != theirs {
                continue;
            }
            for d in crate::agreement::decision_score_differences(&m.imdb_id, reference_scores, &scores) {
                unexplained.push(format!("{}: grouped {d} with identical cuts", m.imdb_id));
            }
        }
    }
    Ok((
        GlobalRow {
            scores,
            differing_cuts,
            unexplained,
        },
        all_cuts,
    ))
}

pub fn run(args: Args, ort_lib: Option<&Path>, ws: &super::workspace::Workspace) -> anyhow::Result<()> {
    let report = verify(&args, ort_lib, ws)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if !report.ok {
        let missing: Vec<&str> = report
            .rows
            .iter()
            .filter(|r| r.scores.is_none())
            .map(|r| r.runtime.as_str())
            .collect();
        if !missing.is_empty() {
            bail!("runtime(s) unavailable: {}", missing.join(", "));
        }
        let reasons: Vec<String> = report
            .rows
            .iter()
            .flat_map(|r| {
                let local = r.agreement.iter().flat_map(|a| &a.unexplained);
                let grouped = r.global.iter().flat_map(|g| &g.unexplained);
                local.chain(grouped).map(move |u| format!("{}: {u}", r.runtime))
            })
            .collect();
        if !reasons.is_empty() {
            bail!(
                "runtimes disagree beyond what their max|Δp| explains:\n  {}",
                reasons.join("\n  ")
            );
        }
        bail!(
            "AP or Miou differ between runtimes by more than --tolerance {:e}",
            report.tolerance.unwrap_or(0.0)
        );
    }
    Ok(())
}

pub fn print_report(r: &Report) {
    println!(
        "{} movies, {} windows; {}; max|Δp| bound {:.1e}{}",
        r.movies,
        r.windows,
        match &r.global {
            Some(g) => crate::segment::rule_description(g.threshold, Some(g)),
            None => "rule local: the threshold rule's decisions at 0.5".to_string(),
        },
        r.max_dp_bound,
        r.tolerance
            .map_or(String::new(), |t| format!(", |ΔAP| and |ΔMiou| ≤ {t:e}"))
    );
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>10} {:>6} {:>21} {:>7} {:>8} {:>10}",
        "runtime",
        "AP",
        "mAP",
        "Miou",
        "P",
        "R",
        "F1",
        "max|Δp|",
        "flips",
        "AP reachable",
        "pairs",
        "wall s",
        "windows/s"
    );
    for row in &r.rows {
        let Some(s) = &row.scores else {
            println!(
                "{:<9} unavailable: {}",
                row.runtime,
                row.error.as_deref().unwrap_or("")
            );
            continue;
        };
        let (reach, pairs) = match &row.agreement {
            Some(a) => (
                format!("[{:.6}, {:.6}]", a.ap_interval.0, a.ap_interval.1),
                a.swappable_pairs.to_string(),
            ),
            None => ("reference".to_string(), "-".to_string()),
        };
        let name = if row.tf32 {
            format!("{}+tf32", row.runtime)
        } else {
            row.runtime.clone()
        };
        println!(
            "{:<9} {:>8.6} {:>8.6} {:>8.6} {:>7.4} {:>7.4} {:>7.4} {:>10.2e} {:>6} {:>21} {:>7} {:>8.2} {:>10.1}",
            name,
            s.ap,
            s.map,
            s.miou,
            s.precision,
            s.recall,
            s.f1,
            row.max_abs_dp,
            row.flips,
            reach,
            pairs,
            row.seconds,
            row.windows_per_s
        );
        if let Some(a) = &row.agreement {
            for u in &a.unexplained {
                println!("          unexplained: {u}");
            }
        }
        if let Some(p) = &row.sceneseg {
            let miou = p.scores.miou.map_or("none".to_string(), |m| format!("{m:.6}"));
            println!(
                "          SceneSeg: AP {:.6}  mAP {:.4}  Miou {miou}  Recall {:.4}  Recall@3s {:.4}; {} cut(s) decided unlike the first runtime",
                p.scores.ap, p.scores.map, p.scores.recall, p.scores.recall_time, p.differing_cuts
            );
            for u in &p.unexplained {
                println!("          unexplained: {u}");
            }
        }
        if let Some(g) = &row.global {
            println!(
                "          grouped: AP {:.6}  mAP {:.6}  Miou {:.6}  F1 {:.4}; {} cut(s) decided unlike the first runtime",
                g.scores.ap,
                g.scores.map,
                g.scores.miou,
                g.scores.f1,
                g.differing_cuts.len()
            );
            for d in &g.differing_cuts {
                println!(
                    "          {} boundary {}: first runtime {}, margin {:.3e} (explainable {:.3e})",
                    d.imdb_id,
                    d.boundary,
                    if d.reference_cut { "cuts" } else { "does not cut" },
                    d.margin,
                    d.explainable
                );
            }
            for u in &g.unexplained {
                println!("          unexplained: {u}");
            }
        }
    }
    println!(
        "{}",
        if r.ok {
            "runtimes agree"
        } else {
            "RUNTIMES DISAGREE or are unavailable"
        }
    );
}
