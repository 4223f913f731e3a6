// CUDA graphs of libtorch work (at::cuda::CUDAGraph, what torch.cuda.graph
// wraps), which tch does not bind: a training step's kernels are captured
// once and replayed as one launch. Built with the `cuda` feature only.
// Exceptions never cross (guarded.h).
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include "guarded.h"

using lgss_native::guarded;

extern "C" {

// Makes a stream from libtorch's pool the calling thread's current stream
// on `device`, after the device has finished everything queued so far. A
// capture cannot run on the legacy default stream, and warm-up, capture and
// replay must share a stream (cuBLAS handles and workspaces are per stream,
// made lazily: on the capture's stream they must exist before it begins).
// All later work of this thread runs in order on that one stream.
int lgss_cuda_use_side_stream(int device, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10::cuda::device_synchronize();
    c10::cuda::setCurrentCUDAStream(
        c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device)));
  });
}

// A new, empty graph, or null (with `err`) if libtorch refused.
void* lgss_cuda_graph_new(char* err, size_t err_len) {
  at::cuda::CUDAGraph* graph = nullptr;
  guarded(err, err_len, [&] { graph = new at::cuda::CUDAGraph(); });
  return graph;
}

// Starts capturing the current stream's work into `graph` (its own memory
// pool: what the captured kernels allocate stays reserved for replays).
int lgss_cuda_graph_capture_begin(void* graph, char* err, size_t err_len) {
  return guarded(err, err_len,
                 [&] { static_cast<at::cuda::CUDAGraph*>(graph)->capture_begin(); });
}

// Ends the capture and instantiates the graph.
int lgss_cuda_graph_capture_end(void* graph, char* err, size_t err_len) {
  return guarded(err, err_len,
                 [&] { static_cast<at::cuda::CUDAGraph*>(graph)->capture_end(); });
}

// Launches the captured work on the current stream.
int lgss_cuda_graph_replay(void* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { static_cast<at::cuda::CUDAGraph*>(graph)->replay(); });
}

void lgss_cuda_graph_free(void* graph) {
  try {
    delete static_cast<at::cuda::CUDAGraph*>(graph);
  } catch (...) {
  }
}

}  // extern "C"
