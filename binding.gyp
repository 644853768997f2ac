# Builds build/Release/seqfuse.node, the CPU-only addon (CMakeLists.txt builds the CUDA-enabled and
# emulated ones). Sources come from native/sources.txt (scripts/sources.js);
# kernel files are compiled three times, once per ISA pass (native/cpu/simd.h), and the right
# pass is picked at run time by cpuid. No host-only flags: a build must run on any x86-64.
{
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
    "cflags_cc": ["-std=c++17", "-fopenmp", "-fexceptions", "-fPIC", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter",
                  "<!@(node scripts/find-dnnl.js --cflags)"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "xcode_settings": {"GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-Xpreprocessor", "-fopenmp"]},
    "conditions": [["target_arch=='x64'", {"defines": ["SEQFUSE_X86_ISA"]}]]
  },
  "targets": [
    {
      "target_name": "seqfuse",
      "sources": ["<!@(node scripts/sources.js common kernels nocuda)"],
      "defines": ["SF_ISA=0"],
      "libraries": ["<!@(node scripts/find-dnnl.js --libs)"],
      "ldflags": ["-fopenmp"],
      "conditions": [["target_arch=='x64'", {"dependencies": ["seqfuse_isa_avx512", "seqfuse_isa_avx2"]}]]
    }
  ],
  "conditions": [["target_arch=='x64'", {"targets": [
    {
      "target_name": "seqfuse_isa_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/sources.js kernels)"],
      "defines": ["SF_ISA=2"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx512bf16", "-mfma", "-mf16c",
                    "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
    },
    {
      "target_name": "seqfuse_isa_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/sources.js kernels)"],
      "defines": ["SF_ISA=1"],
      "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
    }
  ]}]]
}
