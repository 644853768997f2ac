// cuda/emu/emu.h — CUDA kernel sources on the CPU under g++ (see README.md). Kernel sources
// include cuda/launch.h, which includes this header when not compiled by nvcc.
#pragma once

#include "core.h"
#include "device.h"
#include "runtime.h"
#include "wmma.h"

// Qualifiers the host headers leave undefined or define for the host.
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#undef __shared__
#if defined(SF_EMU_PARALLEL)
// Blocks run on several OS threads: one copy per thread. ASan does not instrument thread_local
// storage, so static shared overruns go unseen in this mode.
#define __shared__ static thread_local
#else
// Blocks run one after another: a plain static, which ASan surrounds with redzones.
#define __shared__ static
#endif
