// cuda_emu.h: run the kernels of kernels/*.cu on the CPU, one OS thread per CUDA thread.
//
// Purpose: test the CUDA code's indexing, masking and barrier placement on a machine with no
// GPU (CI, or before spending scarce GPU time). It supports exactly the subset of CUDA those
// kernels use: 1-D blocks whose size is a multiple of 32, threadIdx/blockIdx/blockDim/gridDim,
// __syncthreads, __shfl_xor_sync, dynamic shared memory (MG_DYNAMIC_SMEM), float2/float4.
//
// How: a launch runs the blocks one after the other; a block's threads are real threads that
// meet at a std::barrier for __syncthreads, and each warp has its own barrier for shuffles
// (every lane writes its value to a slot, waits, reads its partner's, waits). A thread that
// returns drops out of both barriers, which is what CUDA does for exited threads.
// Shared memory is allocated at exactly the launch's byte count (so AddressSanitizer catches
// a kernel that uses more than the host asked for) and filled with NaN (so reading a shared
// value nobody wrote poisons the result instead of silently being 0).
//
// Not emulated: warp-synchronous behaviour beyond shuffles, atomics, the memory model of a
// real GPU. Passing here is necessary, not sufficient: tests/test_gpu.py is the real check.
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <barrier>
#include <cstddef>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
inline float2 make_float2(float a, float b) { return float2{a, b}; }

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
// IEEE round-to-nearest arithmetic that CUDA never contracts into an FMA (09_adam.cu uses them
// to reproduce NumPy's float32 rounding step by step). x86-64 without -march has no FMA either.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }

struct EmuBlock {
  explicit EmuBlock(int nthreads)
      : bar(nthreads), shfl(nthreads) {
    for (int w = 0; w < nthreads / 32; ++w) warp_bars.emplace_back(new std::barrier<>(32));
  }
  std::barrier<> bar;
  std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
  std::vector<float> shfl;
  float* smem = nullptr;
};

inline dim3 blockDim, gridDim;
inline thread_local dim3 threadIdx, blockIdx;
inline thread_local EmuBlock* emu_block = nullptr;

#define MG_DYNAMIC_SMEM(name) float* name = emu_block->smem

inline void __syncthreads() { emu_block->bar.arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned /*mask*/, float v, int lane_mask, int width = 32) {
  const int t = (int)threadIdx.x, lane = t & 31, w = t >> 5;
  float* slot = &emu_block->shfl[w * 32];
  slot[lane] = v;
  emu_block->warp_bars[w]->arrive_and_wait();
  const int src = (lane & ~(width - 1)) | ((lane ^ lane_mask) & (width - 1));
  const float r = slot[src];
  emu_block->warp_bars[w]->arrive_and_wait();
  return r;
}

template <typename Body>
void emu_launch(dim3 grid, dim3 block, size_t smem_bytes, Body body) {
  if (block.y != 1 || block.z != 1 || block.x % 32 != 0 || block.x == 0) {
    fprintf(stderr, "cuda_emu: only 1-D blocks of a multiple of 32 threads are supported\n");
    exit(3);
  }
  gridDim = grid;
  blockDim = block;
  const int n = (int)block.x;
  const size_t nf = smem_bytes / sizeof(float);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        EmuBlock blk(n);
        float* smem = nf ? new (std::align_val_t(16)) float[nf] : nullptr;
        for (size_t i = 0; i < nf; ++i) smem[i] = std::numeric_limits<float>::quiet_NaN();
        blk.smem = smem;
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (int t = 0; t < n; ++t)
          threads.emplace_back([&, t] {
            threadIdx = dim3(t, 0, 0);
            blockIdx = dim3(bx, by, bz);
            emu_block = &blk;
            body();
            blk.warp_bars[t >> 5]->arrive_and_drop();  // an exited thread leaves the barriers
            blk.bar.arrive_and_drop();
          });
        for (auto& th : threads) th.join();
        if (smem) operator delete[](smem, std::align_val_t(16));
      }
}

// ---- the command-line driver: `exe KERNEL gx gy gz bx by bz smem ARG...` ----------------------
// ARG is i:<int>, f:<float, hex allowed>, p:<file>:<count> (a const float* read from the file),
// w:<file>:<count> (a float* read from the file and written back to it after the launch),
// I:<file>:<count> (a const int*) or t:<file>:<count>,... (a float* const* table, written back).

struct EmuBuf {
  std::string path;
  float* data;
  size_t n;
  bool writable;
};

inline float* emu_load(const char* spec, std::vector<EmuBuf>& bufs, bool writable) {
  std::string s(spec + 2);
  const size_t colon = s.rfind(':');
  const std::string path = s.substr(0, colon);
  const size_t n = strtoull(s.c_str() + colon + 1, nullptr, 10);
  float* data = new float[n ? n : 1];  // exact size: AddressSanitizer sees any overrun
  FILE* f = fopen(path.c_str(), "rb");
  if (!f || fread(data, sizeof(float), n, f) != n) {
    fprintf(stderr, "cuda_emu: cannot read %zu floats from %s\n", n, path.c_str());
    exit(2);
  }
  fclose(f);
  bufs.push_back({path, data, n, writable});
  return data;
}

template <typename T> struct EmuArg;
template <> struct EmuArg<int> {
  static int get(const char* s, std::vector<EmuBuf>&) { return (int)strtol(s + 2, nullptr, 10); }
};
template <> struct EmuArg<float> {
  static float get(const char* s, std::vector<EmuBuf>&) { return strtof(s + 2, nullptr); }
};
template <> struct EmuArg<const float*> {
  static const float* get(const char* s, std::vector<EmuBuf>& b) { return emu_load(s, b, false); }
};
template <> struct EmuArg<float*> {
  static float* get(const char* s, std::vector<EmuBuf>& b) { return emu_load(s, b, true); }
};
// I:<file>:<count>: a const int* (int32 indices, e.g. 08's targets), read-only.
template <> struct EmuArg<const int*> {
  static const int* get(const char* s, std::vector<EmuBuf>& b) {
    static_assert(sizeof(int) == sizeof(float), "int32 buffers travel as 4-byte words");
    return reinterpret_cast<const int*>(emu_load(s, b, false));
  }
};
// t:<file>:<count>,<file>:<count>,...: a table of float pointers (09's multi-tensor Adam); every
// buffer is read from its file and written back after the launch.
template <> struct EmuArg<float* const*> {
  static float* const* get(const char* s, std::vector<EmuBuf>& b) {
    static std::vector<std::vector<float*>> tables;  // live until the process exits
    tables.emplace_back();
    std::string rest(s + 2);
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      const std::string one = "w:" + rest.substr(0, comma);
      tables.back().push_back(emu_load(one.c_str(), b, true));
      rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    }
    return tables.back().data();
  }
};

template <typename... A, size_t... I>
int emu_run_impl(void (*kernel)(A...), char** argv, std::index_sequence<I...>) {
  const dim3 grid(atoi(argv[0]), atoi(argv[1]), atoi(argv[2]));
  const dim3 block(atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  const size_t smem = strtoull(argv[6], nullptr, 10);
  char** specs = argv + 7;
  std::vector<EmuBuf> bufs;
  bufs.reserve(sizeof...(A));
  std::tuple<A...> args{EmuArg<A>::get(specs[I], bufs)...};  // braces: evaluated in order
  emu_launch(grid, block, smem, [&] { std::apply(kernel, args); });
  for (auto& b : bufs) {
    if (b.writable) {
      FILE* f = fopen(b.path.c_str(), "wb");
      if (!f || fwrite(b.data, sizeof(float), b.n, f) != b.n) {
        fprintf(stderr, "cuda_emu: cannot write %s\n", b.path.c_str());
        return 2;
      }
      fclose(f);
    }
    delete[] b.data;
  }
  return 0;
}

template <typename... A>
int emu_run(void (*kernel)(A...), int argc, char** argv) {
  if (argc != (int)(9 + sizeof...(A))) {
    fprintf(stderr, "cuda_emu: %s takes %zu arguments, got %d\n", argv[1], sizeof...(A), argc - 9);
    return 2;
  }
  return emu_run_impl(kernel, argv + 2, std::index_sequence_for<A...>{});
}
