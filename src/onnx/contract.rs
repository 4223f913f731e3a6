//! The ONNX contract between `lgss export` and the runtimes that read its
//! files: the window interface's version, the metadata keys, and the names
//! of the nodes and initializers tract's Rust window max replaces. One
//! module that both import, so neither imports the other.

/// The version of the run interface (`crate::runtime::input`): windows
/// `[batch, seq_len, shot_num, D]` per modality, except a modality the
/// model embeds shot by shot (STFT audio), which takes the run's shots
/// `[shots, D]` under its own name and their rows `[batch, seq_len,
/// shot_num]` (int64) as [`rows_input`]. Exported models carry it as
/// [`META_INTERFACE`], and a model of another version is refused, except
/// [`INTERFACE_WINDOWS_ONLY`] for a model without such a modality.
pub const INTERFACE: &str = "windows-2";

/// The first version: every modality as windows. A model without a
/// per-shot modality has the same graph in both versions.
pub const INTERFACE_WINDOWS_ONLY: &str = "windows-1";

/// The rows input of per-shot modality `key`: which of the run's shots
/// fills each window position.
pub fn rows_input(key: &str) -> String {
    format!("{key}_rows")
}

/// Metadata keys written into the model.
pub const META_CONFIG: &str = "lgss.config";
pub const META_VERSION: &str = "lgss.version";
pub const META_MODALITIES: &str = "lgss.modalities";
pub const META_FEATURE_DIMS: &str = "lgss.feature_dims";
pub const META_DATA: &str = "lgss.training_data";
/// The runtimes' input interface ([`INTERFACE`]).
pub const META_INTERFACE: &str = "lgss.interface";
/// The decision threshold chosen on the validation movies (from the checkpoint).
pub const META_DECISION_THRESHOLD: &str = "lgss.decision_threshold";
/// The training scenes' length histogram (from the checkpoint): global
/// grouping's scene-length prior.
pub const META_SCENE_LENGTHS: &str = "lgss.scene_length_counts";
/// Global grouping's γ and λ chosen on validation movies (JSON), copied from
/// the checkpoint.
pub const META_GROUPING: &str = "lgss.grouping_choice";
/// Window-conv channels kept per modality (those that can be the maximum).
pub const META_ACTIVE_CHANNELS: &str = "lgss.window_max_channels";

/// The name of a branch's window-max output `[n, d]` (`p`: `bnet_<modality>`).
pub fn window_max_name(p: &str) -> String {
    format!("{p}.window_max")
}

/// The initializers holding the window conv's rows that can win: `[C', k]`
/// weights and `[C']` biases.
pub fn window_max_weight_names(p: &str) -> (String, String) {
    (
        format!("{p}.bnet.conv1.weight.active_rows"),
        format!("{p}.bnet.conv1.bias.active_rows"),
    )
}
