// native/core/error.h — the one error type native code throws.
// The N-API layer (native/napi/addon.h) catches it and turns it into a JS SeqfuseError with the
// same stable code; kernels never throw (they run after validation).
#pragma once
#include <exception>
#include <sstream>
#include <string>
#include <utility>

namespace seqfuse {

enum class ErrorCode { Shape, DType, Device, Disposed, Arg, Unsupported, OOM, Backend };

inline const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::Shape: return "ERR_SHAPE";
    case ErrorCode::DType: return "ERR_DTYPE";
    case ErrorCode::Device: return "ERR_DEVICE";
    case ErrorCode::Disposed: return "ERR_DISPOSED";
    case ErrorCode::Arg: return "ERR_ARG";
    case ErrorCode::Unsupported: return "ERR_UNSUPPORTED";
    case ErrorCode::OOM: return "ERR_OOM";
    case ErrorCode::Backend: return "ERR_BACKEND";
  }
  return "ERR_BACKEND";
}

struct Error : std::exception {
  ErrorCode code;
  std::string message;
  Error(ErrorCode c, std::string m) : code(c), message(std::move(m)) {}
  const char* what() const noexcept override { return message.c_str(); }
};

// fail(ErrorCode::Shape, "layerNorm: expected gamma of shape [", n, "] but received ", s)
template <class... Parts>
[[noreturn]] void fail(ErrorCode code, const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(code, os.str());
}

}  // namespace seqfuse
