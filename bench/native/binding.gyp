# Native baselines for the bench harness (bench/native/index.cjs builds this on demand).
{
  "targets": [{
    "target_name": "bench_helper",
    "sources": ["bench_helper.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "cflags_cc": ["-std=c++17", "-O2", "-fopenmp", "-fexceptions", "<!@(node ../../scripts/find-dnnl.js --cflags)"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
    "libraries": ["<!@(node ../../scripts/find-dnnl.js --libs)"],
    "ldflags": ["-fopenmp"]
  }]
}
