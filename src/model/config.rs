//! Model and training configuration, read from TOML files in `models/`.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::data::movie::Modality;
use crate::data::stft_image;

/// Per-modality numbers, keyed by the pickle's names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerModality<T> {
    pub place: T,
    pub cast: T,
    pub action: T,
    pub audio: T,
}

impl<T: Copy> PerModality<T> {
    pub fn get(&self, m: Modality) -> T {
        match m {
            Modality::Place => self.place,
            Modality::Cast => self.cast,
            Modality::Action => self.action,
            Modality::Audio => self.audio,
        }
    }
}

/// The LGSS architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Shots in one boundary window (even; half on each side of the boundary).
    pub shot_num: usize,
    /// Consecutive boundaries the BiLSTM sees at once.
    pub seq_len: usize,
    /// Conv channels of the boundary net (C).
    pub sim_channel: usize,
    /// LSTM hidden size (H).
    pub lstm_hidden_size: usize,
    /// Width of fc1.
    #[serde(default = "default_fc_hidden")]
    pub fc_hidden: usize,
    #[serde(default = "default_true")]
    pub bidirectional: bool,
    /// Modalities the model uses, in order.
    pub modalities: Vec<Modality>,
    pub feature_dims: PerModality<usize>,
    /// Weight of each modality's logits in the sum.
    pub ratio: PerModality<f64>,
    /// How each shot's features are scaled before the boundary net (part of
    /// the model: the exported graph does it too, so runtimes take raw
    /// features). Absent in configs from before it existed: `none`.
    #[serde(default, skip_serializing_if = "FeatureNorm::is_none")]
    pub feature_norm: FeatureNorm,
    /// How audio enters the model: one feature vector a shot (MovieScenes'
    /// 512-d), or SceneSeg's STFT image a shot through its CNN. Absent:
    /// `features`.
    #[serde(default, skip_serializing_if = "AudioInput::is_features")]
    pub audio_input: AudioInput,
    /// Output channels of the STFT audio network's six convs; the last is
    /// also the width of its fc, the shot's audio embedding. SceneSeg's
    /// by default; narrower for small models and test fixtures.
    #[serde(
        default = "default_stft_channels",
        skip_serializing_if = "is_default_stft_channels"
    )]
    pub stft_channels: [usize; 6],
}

/// How the audio modality enters the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioInput {
    /// One feature vector a shot, through the same boundary net as the
    /// other modalities.
    #[default]
    Features,
    /// One 257×90 STFT image a shot (SceneSeg's `aud_feat`, flattened to
    /// `feature_dims.audio = 23130`) through SceneSeg's audio CNN (six
    /// Conv2d + BatchNorm2d + ReLU blocks, an fc); its boundary net is the
    /// half-window conv's cosine similarity only, as SceneSeg's `BNet_aud`.
    Stft,
}

impl AudioInput {
    /// Frequency bins and frames of one STFT image ([`stft_image::SHAPE`]).
    pub const STFT_SHAPE: [usize; 2] = stft_image::SHAPE;
    /// The image flattened row-major: the audio feature width it implies.
    pub const STFT_DIM: usize = stft_image::DIM;

    fn is_features(&self) -> bool {
        *self == AudioInput::Features
    }
}

/// SceneSeg's `audnet` widths.
pub const SCENESEG_STFT_CHANNELS: [usize; 6] = [64, 192, 384, 256, 256, 512];

fn default_stft_channels() -> [usize; 6] {
    SCENESEG_STFT_CHANNELS
}

fn is_default_stft_channels(c: &[usize; 6]) -> bool {
    *c == SCENESEG_STFT_CHANNELS
}

/// Per-shot feature scaling, per modality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureNorm {
    /// The features as the file has them (the paper).
    #[default]
    None,
    /// Each shot's row divided by its root mean square, `x·√D / max(‖x‖₂, ε)`:
    /// every shot then has the same weight in the window however loud its
    /// features (dense audio vs sparse place); all-zero rows (nobody on
    /// screen) stay zero.
    Rms,
}

impl FeatureNorm {
    /// The ε in `max(‖x‖₂, ε)`: only keeps an all-zero row at zero.
    pub const EPS: f64 = 1e-12;

    fn is_none(&self) -> bool {
        *self == FeatureNorm::None
    }
}

fn default_fc_hidden() -> usize {
    100
}

fn default_true() -> bool {
    true
}

/// The training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub lr: f64,
    /// L2 penalty added to the gradient (torch.optim.Adam semantics).
    pub weight_decay: f64,
    /// Epochs (0-based) at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
    /// Cross-entropy weights of [no boundary, boundary].
    pub class_weights: [f64; 2],
    /// Sequences per batch.
    pub batch_size: usize,
    pub epochs: usize,
    /// Share of the non-test sequences held out for validation.
    pub val_fraction: f64,
    /// Share of movies (the last by file name) held out for testing.
    pub test_fraction: f64,
    /// Weight decay applied to the weights themselves, `w ← w·(1 − lr·wd)`
    /// (torch.optim.AdamW), instead of added to the gradient as an L2 term:
    /// Adam's per-weight scaling then does not weaken it where gradients are
    /// large. Absent: false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub decoupled_weight_decay: bool,
    /// Decay of an exponential moving average of the weights, updated every
    /// step (warmed up as `min(decay, (1 + t)/(10 + t))`). When set, the
    /// averaged weights are the ones validated, checkpointed as the model
    /// and exported; the trained ones stay in the checkpoint for `--resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
    /// Dropout on the LSTM inputs (each window's context and similarity
    /// features) while training; inference is unchanged. Absent: 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lstm_input_dropout: f64,
    /// Stop once this many epochs in a row have not improved validation AP
    /// (the stopping epoch is marked in `metrics.jsonl`). Absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop_patience: Option<usize>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub train: TrainConfig,
}

impl ModelConfig {
    /// Whether modality `m` enters as STFT images through the audio CNN.
    pub fn is_stft(&self, m: crate::data::movie::Modality) -> bool {
        m == crate::data::movie::Modality::Audio && self.audio_input == AudioInput::Stft
    }

    /// Whether modality `m` goes into a run as shots and window rows rather
    /// than windows (`crate::runtime::input`): a network that embeds each
    /// shot on its own, SceneSeg's STFT audio CNN, then embeds it once.
    pub fn takes_shots(&self, m: crate::data::movie::Modality) -> bool {
        self.is_stft(m)
    }

    /// The shape of modality `m`'s input for `batch` sequences:
    /// `[batch, seq_len, shot_num, D]` (the window interface every runtime
    /// and the ONNX graph share).
    pub fn input_shape(&self, m: crate::data::movie::Modality, batch: usize) -> [usize; 4] {
        [batch, self.seq_len, self.shot_num, self.feature_dims.get(m)]
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = crate::regular_file::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("{}: invalid config", path.display()))
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("cannot write the config as TOML")
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let m = &self.model;
        if m.shot_num < 2 || !m.shot_num.is_multiple_of(2) {
            bail!("model.shot_num must be even and at least 2, is {}", m.shot_num);
        }
        if m.seq_len == 0 || m.sim_channel == 0 || m.lstm_hidden_size == 0 || m.fc_hidden == 0 {
            bail!("model sizes must be positive");
        }
        if m.modalities.is_empty() {
            bail!("model.modalities is empty");
        }
        for (i, a) in m.modalities.iter().enumerate() {
            if m.modalities[..i].contains(a) {
                bail!("model.modalities lists {a} twice");
            }
            if m.feature_dims.get(*a) == 0 {
                bail!("model.feature_dims.{a} must be positive");
            }
        }
        if m.audio_input == AudioInput::Stft {
            if !m.modalities.contains(&Modality::Audio) {
                bail!("model.audio_input = \"stft\" needs audio among model.modalities");
            }
            if m.feature_dims.audio != AudioInput::STFT_DIM {
                bail!(
                    "model.audio_input = \"stft\" takes 257×90 images: model.feature_dims.audio must be {}, is {}",
                    AudioInput::STFT_DIM,
                    m.feature_dims.audio
                );
            }
            if m.stft_channels.contains(&0) {
                bail!("model.stft_channels must be positive");
            }
        }
        let t = &self.train;
        if t.lr.is_nan() || t.lr <= 0.0 || t.weight_decay < 0.0 || t.batch_size == 0 {
            bail!("train.lr must be positive, weight_decay non-negative, batch_size positive");
        }
        if !(0.0..1.0).contains(&t.val_fraction) || !(0.0..1.0).contains(&t.test_fraction) {
            bail!("train.val_fraction and train.test_fraction must be in [0, 1)");
        }
        if t.ema_decay.is_some_and(|d| !(0.0..1.0).contains(&d)) {
            bail!("train.ema_decay must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&t.lstm_input_dropout) {
            bail!("train.lstm_input_dropout must be in [0, 1)");
        }
        if t.early_stop_patience == Some(0) {
            bail!("train.early_stop_patience must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped config loads, and says what its name promises.
    #[test]
    fn every_config_in_models_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let c = Config::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                match name.as_str() {
                    "lgss.toml" => {
                        assert_eq!((c.model.shot_num, c.model.feature_norm), (8, FeatureNorm::Rms));
                        assert!(c.train.ema_decay.is_some() && c.train.early_stop_patience.is_some());
                    }
                    "lgss-paper.toml" => {
                        assert_eq!((c.model.shot_num, c.model.feature_norm), (4, FeatureNorm::Rms))
                    }
                    "lgss-wide.toml" => {
                        assert_eq!((c.model.shot_num, c.model.feature_norm), (8, FeatureNorm::Rms))
                    }
                    "lgss-seed.toml" => {
                        assert_eq!((c.model.shot_num, c.model.feature_norm), (4, FeatureNorm::None))
                    }
                    "sceneseg.toml" => {
                        // SceneSeg's config/all.py.
                        let m = &c.model;
                        assert_eq!(
                            (m.shot_num, m.seq_len, m.sim_channel, m.lstm_hidden_size),
                            (4, 10, 512, 512)
                        );
                        assert_eq!(
                            (m.audio_input, m.stft_channels),
                            (AudioInput::Stft, SCENESEG_STFT_CHANNELS)
                        );
                        assert_eq!(m.feature_norm, FeatureNorm::None);
                        let t = &c.train;
                        assert_eq!(
                            (t.lr, t.weight_decay, t.batch_size, t.epochs),
                            (1e-2, 5e-4, 128, 30)
                        );
                        assert_eq!(
                            (t.milestones.as_slice(), t.class_weights),
                            ([15].as_slice(), [0.5, 5.0])
                        );
                    }
                    "sceneseg-small.toml" => assert_eq!(c.model.audio_input, AudioInput::Stft),
                    _ => {}
                }
                seen += 1;
            }
        }
        assert!(seen >= 5, "{seen} configs in {}", dir.display());
    }

    #[test]
    fn feature_norm_defaults_to_none_and_is_not_written_then() {
        let text = include_str!("../../models/lgss-seed.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.model.feature_norm, FeatureNorm::None);
        assert!(!c.to_toml().unwrap().contains("feature_norm"));
        let wide = Config::from_toml(include_str!("../../models/lgss-wide.toml")).unwrap();
        assert!(wide.to_toml().unwrap().contains("feature_norm = \"rms\""));
        assert!(Config::from_toml(&text.replace("[train]", "feature_norm = \"l2\"\n[train]")).is_err());
    }

    /// The STFT audio network is written only where chosen; choosing it
    /// needs the images' width, and round-trips with its channel widths.
    #[test]
    fn audio_input_stft_is_checked_and_round_trips() {
        let seed = include_str!("../../models/lgss-seed.toml");
        let c = Config::from_toml(seed).unwrap();
        assert_eq!(c.model.audio_input, AudioInput::Features);
        assert!(!c.to_toml().unwrap().contains("audio_input"));
        let stft = seed.replace("[train]", "audio_input = \"stft\"\n[train]");
        let err = Config::from_toml(&stft).unwrap_err().to_string();
        assert!(err.contains("23130"), "{err}");
        let small = include_str!("../../models/sceneseg-small.toml");
        let c = Config::from_toml(small).unwrap();
        let back = Config::from_toml(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.model.stft_channels, [4, 8, 8, 8, 8, 16]);
        let no_audio = small.replace("\"action\", \"audio\"]", "\"action\"]");
        assert!(Config::from_toml(&no_audio).is_err());
    }
}
