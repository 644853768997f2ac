// native/napi/addon.cc — module entry: runtime controls (threads, ISA, error class) and the
// registration of every op family's bindings.
#include <dnnl.hpp>
#include "core/threads.h"
#include "cpu/isa.h"
#include "napi/napi_util.h"

namespace seqfuse::napi {

void set_error_class(Napi::Env env, Napi::Function cls);
void register_norm(Napi::Object exports);
void register_tensor(Napi::Object exports);
void register_softmax(Napi::Object exports);
void register_embedding(Napi::Object exports);
void register_matmul(Napi::Object exports);
void register_activation(Napi::Object exports);
void register_dropout(Napi::Object exports);
void register_attention(Napi::Object exports);
void register_layers(Napi::Object exports);
void register_crossent(Napi::Object exports);
void register_optim(Napi::Object exports);
void register_quant(Napi::Object exports);

static Napi::Value init_js(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) fail(ErrorCode::Arg, "init: expected the SeqfuseError class");
  set_error_class(info.Env(), info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Value set_num_threads_js(const Napi::CallbackInfo& info) {
  double n = number_arg(info, 0, "setNumThreads", "n", 1, 1024);
  if (n != int(n)) fail(ErrorCode::Arg, "setNumThreads: expected an integer n but received ", n);
  set_num_threads(int(n));
  return info.Env().Undefined();
}

static Napi::Value get_num_threads_js(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), get_num_threads());
}

static Napi::Value set_isa_js(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) fail(ErrorCode::Arg, "setIsa: expected 'avx512', 'avx2' or 'generic'");
  std::string s = info[0].As<Napi::String>();
  cpu::Isa isa = s == "avx512" ? cpu::Isa::Avx512 : s == "avx2" ? cpu::Isa::Avx2 : cpu::Isa::Generic;
  if (s != "avx512" && s != "avx2" && s != "generic")
    fail(ErrorCode::Arg, "setIsa: expected 'avx512', 'avx2' or 'generic' but received '", s, "'");
  cpu::set_active_isa(isa);
  return info.Env().Undefined();
}

static Napi::Value get_isa_js(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("active", cpu::isa_name(cpu::active_isa()));
  o.Set("best", cpu::isa_name(cpu::best_isa()));
  return o;
}

static Napi::Value build_info_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const dnnl_version_t* v = dnnl_version();
  o.Set("onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
#if defined(SEQFUSE_CUDA) && SEQFUSE_CUDA
  o.Set("cuda", true);
#else
  o.Set("cuda", false);
#endif
  return o;
}

static Napi::Object init_module(Napi::Env env, Napi::Object exports) {
  SF_EXPORT(exports, "init", init_js);
  SF_EXPORT(exports, "set_num_threads", set_num_threads_js);
  SF_EXPORT(exports, "get_num_threads", get_num_threads_js);
  SF_EXPORT(exports, "set_isa", set_isa_js);
  SF_EXPORT(exports, "get_isa", get_isa_js);
  SF_EXPORT(exports, "build_info", build_info_js);
  register_norm(exports);
  register_tensor(exports);
  register_softmax(exports);
  register_embedding(exports);
  register_matmul(exports);
  register_activation(exports);
  register_dropout(exports);
  register_attention(exports);
  register_layers(exports);
  register_crossent(exports);
  register_optim(exports);
  register_quant(exports);
  return exports;
}

}  // namespace seqfuse::napi

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return seqfuse::napi::init_module(env, exports); }
NODE_API_MODULE(seqfuse, Init)
