// Mamba's selective scan on a CPU, forward and backward, float32, one loop nest per batch element.
// The maths is seqlab/hybrid/scan.py's mamba_sequential (h_t = keep_t exp(dt_t A) h_{t-1} + dt_t x_t B_t,
// y_t = C_t . h_t); the state of one batch element (D x N floats) stays in cache for the whole sequence.
// Forward keeps the state at every block start; backward recomputes a block from it and runs the
// adjoint g_t = C_t gy_t + keep_{t+1} a_{t+1} g_{t+1} backwards (see _MambaBlocked's docstring).
#include <torch/extension.h>
#include <cmath>
#include <vector>

static const int64_t BLOCK = 16;

std::vector<torch::Tensor> forward(torch::Tensor x, torch::Tensor dt, torch::Tensor A, torch::Tensor Bm,
                                   torch::Tensor Cm, torch::Tensor h0, torch::Tensor keep) {
  const int64_t b = x.size(0), T = x.size(1), D = x.size(2), N = A.size(1), nb = (T + BLOCK - 1) / BLOCK;
  auto y = torch::empty({b, T, D}, x.options());
  auto hs = torch::empty({b, nb, D, N}, x.options());
  auto hT = h0.clone();
  const bool has_keep = keep.numel() > 0;
  const float *px = x.data_ptr<float>(), *pdt = dt.data_ptr<float>(), *pA = A.data_ptr<float>(),
              *pB = Bm.data_ptr<float>(), *pC = Cm.data_ptr<float>(), *pk = has_keep ? keep.data_ptr<float>() : nullptr;
  float *py = y.data_ptr<float>(), *phs = hs.data_ptr<float>(), *ph = hT.data_ptr<float>();
  at::parallel_for(0, b, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float* h = ph + i * D * N;
      for (int64_t t = 0; t < T; ++t) {
        if (t % BLOCK == 0) std::copy(h, h + D * N, phs + (i * nb + t / BLOCK) * D * N);
        const float kp = has_keep ? pk[i * T + t] : 1.f;
        const float *xt = px + (i * T + t) * D, *dtt = pdt + (i * T + t) * D;
        const float *Bt = pB + (i * T + t) * N, *Ct = pC + (i * T + t) * N;
        float* yt = py + (i * T + t) * D;
        for (int64_t d = 0; d < D; ++d) {
          const float dd = dtt[d], u = dd * xt[d];
          float* hd = h + d * N;
          const float* Ad = pA + d * N;
          float acc = 0.f;
#pragma omp simd reduction(+ : acc)
          for (int64_t n = 0; n < N; ++n) {
            hd[n] = kp * std::exp(dd * Ad[n]) * hd[n] + u * Bt[n];
            acc += Ct[n] * hd[n];
          }
          yt[d] = acc;
        }
      }
    }
  });
  return {y, hT, hs};
}

std::vector<torch::Tensor> backward(torch::Tensor gy, torch::Tensor gh, torch::Tensor x, torch::Tensor dt,
                                    torch::Tensor A, torch::Tensor Bm, torch::Tensor Cm, torch::Tensor keep,
                                    torch::Tensor hs) {
  const int64_t b = x.size(0), T = x.size(1), D = x.size(2), N = A.size(1), nb = hs.size(1);
  auto dx = torch::empty_like(x), ddt = torch::empty_like(dt);
  auto dB = torch::zeros_like(Bm), dC = torch::zeros_like(Cm);
  auto dA_part = torch::zeros({b, D, N}, A.options());
  auto g0 = gh.clone();
  const bool has_keep = keep.numel() > 0;
  const float *px = x.data_ptr<float>(), *pdt = dt.data_ptr<float>(), *pA = A.data_ptr<float>(),
              *pB = Bm.data_ptr<float>(), *pC = Cm.data_ptr<float>(), *pk = has_keep ? keep.data_ptr<float>() : nullptr,
              *pgy = gy.data_ptr<float>(), *phs = hs.data_ptr<float>();
  float *pdx = dx.data_ptr<float>(), *pddt = ddt.data_ptr<float>(), *pdB = dB.data_ptr<float>(),
        *pdC = dC.data_ptr<float>(), *pdA = dA_part.data_ptr<float>(), *pg = g0.data_ptr<float>();
  at::parallel_for(0, b, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> hbuf((BLOCK + 1) * D * N);
    for (int64_t i = lo; i < hi; ++i) {
      float* g = pg + i * D * N;                    // dL/dh_t, carried backwards
      float* dAi = pdA + i * D * N;
      for (int64_t j = nb - 1; j >= 0; --j) {
        const int64_t t0 = j * BLOCK, t1 = std::min(T, t0 + BLOCK);
        std::copy(phs + (i * nb + j) * D * N, phs + (i * nb + j + 1) * D * N, hbuf.begin());
        for (int64_t t = t0; t < t1; ++t) {         // recompute h_t of the block
          const float kp = has_keep ? pk[i * T + t] : 1.f;
          const float *xt = px + (i * T + t) * D, *dtt = pdt + (i * T + t) * D, *Bt = pB + (i * T + t) * N;
          const float* hp = hbuf.data() + (t - t0) * D * N;
          float* hn = hbuf.data() + (t - t0 + 1) * D * N;
          for (int64_t d = 0; d < D; ++d) {
            const float dd = dtt[d], u = dd * xt[d];
#pragma omp simd
            for (int64_t n = 0; n < N; ++n)
              hn[d * N + n] = kp * std::exp(dd * pA[d * N + n]) * hp[d * N + n] + u * Bt[n];
          }
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const float kp = has_keep ? pk[i * T + t] : 1.f;
          const float *xt = px + (i * T + t) * D, *dtt = pdt + (i * T + t) * D;
          const float *Bt = pB + (i * T + t) * N, *Ct = pC + (i * T + t) * N, *gyt = pgy + (i * T + t) * D;
          const float* hp = hbuf.data() + (t - t0) * D * N;
          const float* hn = hbuf.data() + (t - t0 + 1) * D * N;
          float *dBt = pdB + (i * T + t) * N, *dCt = pdC + (i * T + t) * N;
          float *dxt = pdx + (i * T + t) * D, *ddtt = pddt + (i * T + t) * D;
          for (int64_t d = 0; d < D; ++d) {
            const float dd = dtt[d], xd = xt[d], gyd = gyt[d];
            float* gd = g + d * N;
            const float* Ad = pA + d * N;
            float sB = 0.f, sz = 0.f;
#pragma omp simd reduction(+ : sB, sz)
            for (int64_t n = 0; n < N; ++n) {
              const float gn = gd[n] + Ct[n] * gyd;      // dL/dh_t
              const float a = kp * std::exp(dd * Ad[n]);
              const float z = gn * a * hp[d * N + n];   // dL/d(dt A)
              dCt[n] += gyd * hn[d * N + n];
              dBt[n] += gn * dd * xd;
              sB += gn * Bt[n];
              sz += z * Ad[n];
              dAi[d * N + n] += z * dd;
              gd[n] = a * gn;                           // dL/dh_{t-1}
            }
            dxt[d] = dd * sB;
            ddtt[d] = sz + xd * sB;
          }
        }
      }
    }
  });
  return {dx, ddt, dA_part.sum(0), dB, dC, g0};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "Mamba selective scan forward (CPU, float32)");
  m.def("backward", &backward, "Mamba selective scan backward (CPU, float32)");
}
