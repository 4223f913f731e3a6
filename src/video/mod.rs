//! Video in: a movie file decoded by FFmpeg, cut into shots, and turned
//! into the features of a scene318 tree as the LGSS authors' pre-processing
//! makes them (SceneSeg's `pre/`: ShotDetect, place and audio features).

pub mod audio_image;
pub mod colour;
pub mod extract;
pub mod ffmpeg;
pub mod place;
pub mod resize;
pub mod shots;
