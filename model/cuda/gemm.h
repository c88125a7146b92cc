// -----------------------------------------------------------------------------
// File: gemm.h
// -----------------------------------------------------------------------------
//
// Row-major GEMMs on cuBLAS for model/cuda: C = alpha op(A) op(B) + beta C
// with op(A) [M, K], op(B) [K, N], C [M, N], A and B in f32 or bf16 (both
// the same), C in f32, always accumulated in f32 (CUBLAS_COMPUTE_32F: no
// TF32). A grouped form runs one GEMM per group (the experts of a MoE
// layer, each on its own contiguous rows) on the same stream. Host code.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(auto blas, Blas::Create(stream));
//   // y[T, out] = x[T, in] W[out, in]^T
//   TANDEM_RETURN_IF_ERROR(blas->Gemm({false, true, T, out, in}, x, DType::kBF16, w, y, 1, 0));
#ifndef TANDEM_MODEL_CUDA_GEMM_H_
#define TANDEM_MODEL_CUDA_GEMM_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tensor.h"

namespace tandem::model::cuda {

struct GemmShape {
  bool trans_a = false;  // A stored [K, M] when true, else [M, K]
  bool trans_b = false;  // B stored [N, K] when true, else [K, N]
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
};

// One problem of a grouped GEMM: pointers into larger buffers.
struct GemmGroup {
  GemmShape shape;
  const void* a = nullptr;
  const void* b = nullptr;
  float* c = nullptr;
};

class Blas {
 public:
  // Blas::Create()
  //
  // A cuBLAS handle bound to `stream`; kUnavailable without a GPU.
  static absl::StatusOr<std::unique_ptr<Blas>> Create(cudaStream_t stream);
  ~Blas();

  // Blas::Gemm()
  //
  // Enqueues C = alpha op(A) op(B) + beta C (dense, leading dimensions
  // from the shape). kInvalidArgument for negative sizes; cuBLAS errors as
  // kInternal naming the status.
  absl::Status Gemm(const GemmShape& s, const void* a, DType ab, const void* b, float* c, float alpha, float beta);

  // Blas::GroupedGemm()
  //
  // Gemm() for each group in order (groups with m, n or k of 0 are
  // skipped).
  absl::Status GroupedGemm(const std::vector<GemmGroup>& groups, DType ab, float alpha, float beta);

  cudaStream_t stream() const { return stream_; }

 private:
  Blas(void* handle, cudaStream_t stream) : handle_(handle), stream_(stream) {}
  void* handle_;  // cublasHandle_t
  cudaStream_t stream_;
};

}  // namespace tandem::model::cuda

#endif  // TANDEM_MODEL_CUDA_GEMM_H_
