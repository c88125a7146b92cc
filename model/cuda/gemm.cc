#include "model/cuda/gemm.h"

#include <cublas_v2.h>

#include "absl/strings/str_cat.h"

namespace tandem::model::cuda {
namespace {

absl::Status BlasStatus(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  if (s == CUBLAS_STATUS_NOT_INITIALIZED) {
    return absl::UnavailableError(absl::StrCat(what, ": cuBLAS not initialized (no GPU?)"));
  }
  return absl::InternalError(absl::StrCat(what, ": cuBLAS status ", static_cast<int>(s)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Blas>> Blas::Create(cudaStream_t stream) {
  cublasHandle_t h = nullptr;
  if (absl::Status s = BlasStatus(cublasCreate(&h), "cublasCreate"); !s.ok()) return s;
  if (absl::Status s = BlasStatus(cublasSetStream(h, stream), "cublasSetStream"); !s.ok()) {
    cublasDestroy(h);
    return s;
  }
  // Deterministic results: no atomics-based reduction algorithms.
  cublasSetAtomicsMode(h, CUBLAS_ATOMICS_NOT_ALLOWED);
  return std::unique_ptr<Blas>(new Blas(h, stream));
}

Blas::~Blas() { cublasDestroy(static_cast<cublasHandle_t>(handle_)); }

absl::Status Blas::Gemm(const GemmShape& s, const void* a, DType ab, const void* b, float* c, float alpha, float beta) {
  if (s.m < 0 || s.n < 0 || s.k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("gemm: sizes: expected >= 0, got m=", s.m, " n=", s.n, " k=", s.k));
  }
  if (s.m == 0 || s.n == 0 || (s.k == 0 && beta == 1.0f)) return absl::OkStatus();
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T; the
  // column-major view of a row-major buffer is its transpose, so each
  // operand keeps its own transpose flag and the operands swap.
  const int64_t lda = s.trans_a ? s.m : s.k;
  const int64_t ldb = s.trans_b ? s.k : s.n;
  const cudaDataType_t t = ab == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  return BlasStatus(
      cublasGemmEx(static_cast<cublasHandle_t>(handle_), s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                   s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(s.n), static_cast<int>(s.m),
                   static_cast<int>(s.k), &alpha, b, t, static_cast<int>(ldb), a, t, static_cast<int>(lda), &beta, c,
                   CUDA_R_32F, static_cast<int>(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

absl::Status Blas::GroupedGemm(const std::vector<GemmGroup>& groups, DType ab, float alpha, float beta) {
  for (const GemmGroup& g : groups) {
    if (g.shape.m == 0 || g.shape.n == 0) continue;
    if (absl::Status s = Gemm(g.shape, g.a, ab, g.b, g.c, alpha, beta); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem::model::cuda
