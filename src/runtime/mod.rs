//! Inference runtimes. ONNX Runtime is loaded at run time from a library
//! file, so finding it is part of this module's job.

pub mod ort_lib;
