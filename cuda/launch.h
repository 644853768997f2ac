// cuda/launch.h — the one header every kernel source includes: the CUDA headers under nvcc,
// the CPU emulator (cuda/emu) under g++, and the two macros that differ between them.
//
//   SF_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...);
//       kernel<<<grid, block, smem_bytes, stream>>>(args...) under nvcc; the emulator runs the
//       grid synchronously and throws sfemu::Error on divergence or misuse. Wrap a template-id
//       with commas in parentheses: SF_LAUNCH((gemm<float, 64>), ...).
//   SF_DYNAMIC_SHARED(type, name);
//       extern __shared__ type name[] — the block's dynamic shared memory, as a type*.
#pragma once

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#define SF_LAUNCH(kernel, grid, block, smem_bytes, stream) kernel<<<grid, block, smem_bytes, stream>>>
#define SF_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#else
#include "emu/emu.h"
#define SF_LAUNCH(kernel, grid, block, smem_bytes, stream) ::sfemu::launch(kernel, grid, block, smem_bytes, stream)
#define SF_DYNAMIC_SHARED(type, name) type* name = ::sfemu::dynamic_shared<type>()
#endif
