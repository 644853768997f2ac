// cuda/emu/tests/check.h — tiny harness for the emulator self-tests: CHECK counts failures,
// expect_emu_error runs a launch that the emulator must reject, expect_child_failure re-runs this
// program in a mode that must die (AddressSanitizer) and looks for a phrase in its output.
// main() returns finish(): 0 when every check passed.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../../launch.h"

static int g_failures = 0;

#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      ++g_failures;                                               \
      std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                          \
      std::fprintf(stderr, "\n");                                 \
    }                                                             \
  } while (0)

template <class T>
T* managed(size_t n) {
  void* p = nullptr;
  if (cudaMallocManaged(&p, n * sizeof(T)) != cudaSuccess) {
    std::fprintf(stderr, "cudaMallocManaged failed\n");
    std::exit(2);
  }
  return static_cast<T*>(p);
}

// The launch in fn must throw sfemu::Error whose message contains `phrase`.
template <class F>
void expect_emu_error(const char* what, F fn, const char* phrase) {
#if defined(__CUDACC__)
  std::printf("skip %s (emulator-only check)\n", what);
  (void)fn;
  (void)phrase;
#else
  try {
    fn();
    cudaDeviceSynchronize();
    ++g_failures;
    std::fprintf(stderr, "FAIL %s: no sfemu::Error\n", what);
  } catch (const sfemu::Error& e) {
    if (!std::strstr(e.what(), phrase)) {
      ++g_failures;
      std::fprintf(stderr, "FAIL %s: error without \"%s\": %s\n", what, phrase, e.what());
    }
  }
#endif
}

// Waits for the device after a launch (a real GPU runs launches asynchronously; the emulator has
// finished already) and ends the test on a CUDA error, naming `what`.
inline void device_sync(const char* what) {
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    std::fprintf(stderr, "FAIL %s: CUDA error: %s\n", what, cudaGetErrorString(e));
    std::exit(3);
  }
}

// Runs `self mode` as a child process; it must exit non-zero and print `phrase`.
inline void expect_child_failure(const char* self, const char* mode, const char* phrase) {
  const std::string cmd = std::string("'") + self + "' " + mode + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    ++g_failures;
    std::fprintf(stderr, "FAIL %s: cannot start the child\n", mode);
    return;
  }
  std::string out;
  char buf[4096];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  const int status = pclose(p);
  if (status == 0 || out.find(phrase) == std::string::npos) {
    ++g_failures;
    std::fprintf(stderr, "FAIL child '%s': exit status %d, expected failure with \"%s\"; output:\n%s\n", mode, status,
                 phrase, out.c_str());
  }
}

inline int finish(const char* name) {
  if (g_failures) {
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, g_failures);
    return 1;
  }
  std::printf("%s: ok\n", name);
  std::fflush(stdout);
  return 0;
}
