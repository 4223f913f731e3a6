// What every shim in src/native/ does with C++ exceptions: none crosses
// into Rust; the message is copied into the caller's `err` buffer
// (NUL-terminated, truncated to `err_len`) and the call returns -1.
#pragma once

#include <cstring>
#include <exception>

namespace lgss_native {

inline void copy_message(const char* what, char* err, size_t err_len) {
  if (err == nullptr || err_len == 0) return;
  std::strncpy(err, what, err_len - 1);
  err[err_len - 1] = '\0';
}

// Runs `f`; 0 if it returned, -1 (with the message in `err`) if it threw.
template <typename F>
int guarded(char* err, size_t err_len, F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), err, err_len);
    return -1;
  } catch (...) {
    copy_message("unknown C++ exception", err, err_len);
    return -1;
  }
}

}  // namespace lgss_native
