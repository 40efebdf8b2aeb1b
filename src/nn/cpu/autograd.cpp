// Four libtorch autograd functions for training the 1-D networks on the CPU (convolution,
// batch norm, soft thresholding, mean |x|), whose arithmetic lives in Rust (kernels.rs, reached
// through the table `drsn_cpu_set_kernels` stores). libtorch runs the autograd graph, the
// thread pool and every other operation.
//
// Why: for these networks' 4-16 channels, oneDNN's convolution reorders every activation
// into 16-channel blocks and back on each call, and its stride-1 input gradient is about
// 15x the cost of the forward; native batch norm's training statistics cost 15x a ReLU;
// soft thresholding and mean |x| as library operations are several passes each way.
//
// Entry points never throw: they return null and leave the message for
// `drsn_cpu_last_error`. Kernel failures inside backward become c10 errors, which the
// autograd engine hands to the caller of `backward` like any other.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <string>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

extern "C" {
struct drsn_conv_shape {
  int64_t n, c_in, c_out, kernel, len, stride;
};
typedef int32_t (*conv_forward_fn)(const float* x, const float* w, const float* b, float* out, drsn_conv_shape shape);
typedef int32_t (*conv_weight_grad_fn)(const float* x, const float* g, float* gw, float* gb, drsn_conv_shape shape);
struct drsn_rows {
  int64_t n, channels, len;
};
typedef int32_t (*channel_moments_fn)(const float* x, const float* centre, double* out, drsn_rows rows);
typedef int32_t (*channel_grad_sums_fn)(const float* x, const float* g, const float* mean, double* out,
                                        drsn_rows rows);
typedef int32_t (*channel_combine_fn)(const float* g, const float* x, const float* k, float* out, drsn_rows rows);
typedef int32_t (*soft_threshold_fn)(const float* x, const float* tau, float* out, drsn_rows rows,
                                     int64_t per_sample);
typedef int32_t (*soft_threshold_grad_fn)(const float* x, const float* tau, const float* g, float* gx, float* gtau,
                                          drsn_rows rows, int64_t per_sample);
typedef int32_t (*mean_abs_fn)(const float* x, float* out, drsn_rows rows);
typedef int32_t (*mean_abs_grad_fn)(const float* x, const float* g, float* gx, drsn_rows rows);
struct drsn_cpu_kernels {
  conv_forward_fn conv_forward;
  conv_weight_grad_fn conv_weight_grad;
  channel_moments_fn channel_moments;
  channel_grad_sums_fn channel_grad_sums;
  channel_combine_fn channel_combine;
  soft_threshold_fn soft_threshold;
  soft_threshold_grad_fn soft_threshold_grad;
  mean_abs_fn mean_abs;
  mean_abs_grad_fn mean_abs_grad;
};
}

// Nine function pointers, as many as kernels.rs's `Table` holds, in the same order.
static_assert(sizeof(drsn_cpu_kernels) == 9 * sizeof(void*), "drsn_cpu_kernels must match kernels.rs's Table");

drsn_cpu_kernels kernels{};
thread_local std::string last_error;

// Status 1: the kernel found the sizes inconsistent; 2: it panicked (kernels.rs).
void check(int32_t status, const char* what) {
  TORCH_CHECK(status == 0, "drsn cpu kernel ", what, status == 1 ? " refused the sizes it was given" : " panicked");
}

// Runs f(chunk, begin, end) over [0, n) split into `chunks` ranges on libtorch's threads;
// a call writes only its own slot `chunk` of any partial sums.
template <typename F>
void for_chunks(int64_t n, int64_t chunks, const F& f) {
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      f(c, n * c / chunks, n * (c + 1) / chunks);
    }
  });
}

int64_t chunk_count(int64_t n) { return std::max<int64_t>(1, std::min<int64_t>(n, at::get_num_threads())); }

int64_t out_len(int64_t len, int64_t kernel, int64_t stride) { return (len + 2 * (kernel / 2) - kernel) / stride + 1; }

// `x` (N x C_in x L) with `w` (C_out x C_in x K, K odd, "same" padding) and `b`.
at::Tensor conv_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t stride) {
  const int64_t n = x.size(0), c_in = x.size(1), len = x.size(2), c_out = w.size(0), k = w.size(2);
  auto out = at::empty({n, c_out, out_len(len, k, stride)}, x.options());
  const float* xp = x.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  const float* bp = b.defined() ? b.const_data_ptr<float>() : nullptr;
  float* op = out.mutable_data_ptr<float>();
  const int64_t out_per = c_out * out.size(2);
  for_chunks(n, chunk_count(n), [&](int64_t, int64_t begin, int64_t end) {
    check(kernels.conv_forward(xp + begin * c_in * len, wp, bp, op + begin * out_per,
                               {end - begin, c_in, c_out, k, len, stride}),
          "conv_forward");
  });
  return out;
}

struct Conv1d : public torch::autograd::Function<Conv1d> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                            int64_t stride) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["bias"] = b.defined();
    return conv_forward(x, w, b, stride);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const at::Tensor g = grads[0].contiguous();
    const int64_t n = x.size(0), c_in = x.size(1), len = x.size(2), c_out = w.size(0), k = w.size(2);
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      if (stride == 1) {
        // The transposed convolution is a convolution with the kernel flipped and its
        // channel axes swapped ("same" padding is symmetric for odd kernels).
        gx = conv_forward(g, w.flip({2}).transpose(0, 1).contiguous(), at::Tensor(), 1);
      } else {
        gx = std::get<0>(at::convolution_backward(g, x, w, at::OptionalIntArrayRef(), {stride}, {k / 2}, {1}, false,
                                                  {0}, 1, {true, false, false}));
      }
    }
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      const int64_t chunks = chunk_count(n), per_w = c_out * c_in * k, per = per_w + c_out;
      auto partial = at::zeros({chunks, per}, x.options());
      const float* xp = x.const_data_ptr<float>();
      const float* gp = g.const_data_ptr<float>();
      float* pp = partial.mutable_data_ptr<float>();
      const int64_t g_per = c_out * g.size(2);
      for_chunks(n, chunks, [&](int64_t c, int64_t begin, int64_t end) {
        check(kernels.conv_weight_grad(xp + begin * c_in * len, gp + begin * g_per, pp + c * per, pp + c * per + per_w,
                                       {end - begin, c_in, c_out, k, len, stride}),
              "conv_weight_grad");
      });
      const auto total = partial.sum(0);
      gw = total.narrow(0, 0, per_w).view(w.sizes());
      if (ctx->saved_data["bias"].toBool()) gb = total.narrow(0, per_w, c_out);
    }
    return {gx, gw, gb, at::Tensor()};
  }
};

// Per-channel sums over samples and length of x (N x C x L), or of (x - centre)^2.
at::Tensor channel_moments(const at::Tensor& x, const at::Tensor& centre) {
  const int64_t n = x.size(0), c = x.size(1), len = x.size(2), chunks = chunk_count(n);
  auto partial = at::zeros({chunks, c}, x.options().dtype(at::kDouble));
  const float* xp = x.const_data_ptr<float>();
  const float* cp = centre.defined() ? centre.const_data_ptr<float>() : nullptr;
  double* pp = partial.mutable_data_ptr<double>();
  for_chunks(n, chunks, [&](int64_t k, int64_t begin, int64_t end) {
    check(kernels.channel_moments(xp + begin * c * len, cp, pp + k * c, {end - begin, c, len}), "channel_moments");
  });
  return partial.sum(0);
}

// Training-mode batch norm over axis 1 of N x C x L given the batch's statistics (its
// backward treats them as functions of x): libtorch's normalisation, our backward.
struct BatchNorm1d : public torch::autograd::Function<BatchNorm1d> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                            const at::Tensor& mean, const at::Tensor& var, double eps) {
    ctx->save_for_backward({x, w, mean, (var + eps).rsqrt()});
    return std::get<0>(at::native_batch_norm(x, w, b, mean, var, false, 0.0, eps));
  }

  // With xhat = (x - mean) * invstd and per-channel sums over samples and length:
  // gb = sum g, gw = sum g * xhat, gx = w * invstd * (g - mean(g) - xhat * mean(g * xhat)),
  // which is g * k_g + (x - mean) * k_x + k_0 per channel.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &mean = saved[2], &invstd = saved[3];
    const at::Tensor g = grads[0].contiguous();
    const int64_t n = x.size(0), c = x.size(1), len = x.size(2), chunks = chunk_count(n), count = n * len;
    auto partial = at::zeros({chunks, 2 * c}, x.options().dtype(at::kDouble));
    const float* xp = x.const_data_ptr<float>();
    const float* gp = g.const_data_ptr<float>();
    const float* mp = mean.const_data_ptr<float>();
    double* pp = partial.mutable_data_ptr<double>();
    for_chunks(n, chunks, [&](int64_t k, int64_t begin, int64_t end) {
      const int64_t at = begin * c * len;
      check(kernels.channel_grad_sums(xp + at, gp + at, mp, pp + k * 2 * c, {end - begin, c, len}),
            "channel_grad_sums");
    });
    const auto sums = partial.sum(0);
    const auto sum_g = sums.narrow(0, 0, c), sum_gx = sums.narrow(0, c, c) * invstd.to(at::kDouble);
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      const auto inv = invstd.to(at::kDouble);
      const auto scale = (w.defined() ? w.to(at::kDouble) : at::ones_like(inv)) * inv;
      const auto k_x = -scale * inv * sum_gx / count;
      const auto k_0 = -scale * sum_g / count;
      const auto k = at::cat({scale, k_x, k_0, mean.to(at::kDouble)}).to(at::kFloat).contiguous();
      gx = at::empty_like(x);
      const float* kp = k.const_data_ptr<float>();
      float* op = gx.mutable_data_ptr<float>();
      for_chunks(n, chunks, [&](int64_t, int64_t begin, int64_t end) {
        check(kernels.channel_combine(gp + begin * c * len, xp + begin * c * len, kp, op + begin * c * len,
                                      {end - begin, c, len}),
              "channel_combine");
      });
    }
    if (ctx->needs_input_grad(1)) gw = sum_gx.to(at::kFloat);
    if (ctx->needs_input_grad(2)) gb = sum_g.to(at::kFloat);
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The batch's mean and biased variance per channel (two passes, sums in double), with the
// running statistics updated as libtorch does (unbiased variance), then the function above.
at::Tensor batch_norm_train(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::Tensor running_mean,
                            at::Tensor running_var, double momentum, double eps) {
  at::Tensor mean, var, var64;
  const int64_t count = x.size(0) * x.size(2);
  {
    at::NoGradGuard no_grad;
    mean = (channel_moments(x, at::Tensor()) / count).to(at::kFloat);
    var64 = channel_moments(x, mean) / count;
    var = var64.to(at::kFloat);
  }
  auto out = BatchNorm1d::apply(x, w, b, mean, var, eps);
  // Only once nothing can fail: libtorch's operator, run instead after a failure, moves them.
  at::NoGradGuard no_grad;
  if (running_mean.defined()) running_mean.mul_(1 - momentum).add_(mean, momentum);
  if (running_var.defined())
    running_var.mul_(1 - momentum).add_((var64 * (double(count) / double(count - 1))).to(at::kFloat), momentum);
  return out;
}

// Soft thresholding of x (N x C x L) by tau (N x C' x 1, C' = C or 1), in one pass each way
// instead of the six elementwise operations (and their backwards) of the relu form.
struct SoftThreshold : public torch::autograd::Function<SoftThreshold> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& tau) {
    ctx->save_for_backward({x, tau});
    const int64_t n = x.size(0), c = x.size(1), len = x.size(2), per = tau.size(1);
    auto out = at::empty_like(x);
    const float* xp = x.const_data_ptr<float>();
    const float* tp = tau.const_data_ptr<float>();
    float* op = out.mutable_data_ptr<float>();
    for_chunks(n, chunk_count(n), [&](int64_t, int64_t begin, int64_t end) {
      check(kernels.soft_threshold(xp + begin * c * len, tp + begin * per, op + begin * c * len, {end - begin, c, len},
                                   per),
            "soft_threshold");
    });
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &tau = saved[1];
    const at::Tensor g = grads[0].contiguous();
    const int64_t n = x.size(0), c = x.size(1), len = x.size(2), per = tau.size(1);
    auto gx = at::empty_like(x);
    auto gtau = at::empty_like(tau);
    const float* xp = x.const_data_ptr<float>();
    const float* tp = tau.const_data_ptr<float>();
    const float* gp = g.const_data_ptr<float>();
    float* gxp = gx.mutable_data_ptr<float>();
    float* gtp = gtau.mutable_data_ptr<float>();
    for_chunks(n, chunk_count(n), [&](int64_t, int64_t begin, int64_t end) {
      check(kernels.soft_threshold_grad(xp + begin * c * len, tp + begin * per, gp + begin * c * len,
                                        gxp + begin * c * len, gtp + begin * per, {end - begin, c, len}, per),
            "soft_threshold_grad");
    });
    return {gx, gtau};
  }
};

// mean |x| over the length of x (N x C x L), N x C: one pass each way instead of abs, sum
// and division and their backwards.
struct MeanAbs : public torch::autograd::Function<MeanAbs> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    const int64_t n = x.size(0), c = x.size(1), len = x.size(2);
    auto out = at::empty({n, c}, x.options());
    const float* xp = x.const_data_ptr<float>();
    float* op = out.mutable_data_ptr<float>();
    for_chunks(n, chunk_count(n), [&](int64_t, int64_t begin, int64_t end) {
      check(kernels.mean_abs(xp + begin * c * len, op + begin * c, {end - begin, c, len}), "mean_abs");
    });
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    const at::Tensor g = grads[0].contiguous();
    const int64_t n = x.size(0), c = x.size(1), len = x.size(2);
    auto gx = at::empty_like(x);
    const float* xp = x.const_data_ptr<float>();
    const float* gp = g.const_data_ptr<float>();
    float* op = gx.mutable_data_ptr<float>();
    for_chunks(n, chunk_count(n), [&](int64_t, int64_t begin, int64_t end) {
      const int64_t at = begin * c * len;
      check(kernels.mean_abs_grad(xp + at, gp + begin * c, op + at, {end - begin, c, len}), "mean_abs_grad");
    });
    return {gx};
  }
};

template <typename F>
at::Tensor* guarded(const F& f) {
  try {
    return new at::Tensor(f());
  } catch (const c10::Error& e) {
    last_error = e.what_without_backtrace();
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return nullptr;
}

at::Tensor optional(const at::Tensor* t) { return t ? *t : at::Tensor(); }

// The kernels trust these shapes: every size they index by is checked here first.
void check_float_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu(), name, " must be a float tensor on the CPU");
}

void check_channels(const at::Tensor& t, int64_t channels, const char* name) {
  if (!t.defined()) return;
  check_float_cpu(t, name);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == channels, name, " must hold one value per channel (", channels, ")");
}

void check_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t stride) {
  check_float_cpu(x, "input");
  check_float_cpu(w, "weight");
  TORCH_CHECK(x.dim() == 3 && x.size(1) > 0 && x.size(2) > 0, "input must be N x C x L, got ", x.sizes());
  TORCH_CHECK(w.dim() == 3 && w.size(0) > 0 && w.size(1) == x.size(1) && w.size(2) % 2 == 1,
              "weight must be C_out x ", x.size(1), " x K (K odd), got ", w.sizes());
  TORCH_CHECK(stride >= 1, "stride must be at least 1");
  check_channels(b, w.size(0), "bias");
}

void check_batch_norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const at::Tensor& m,
                      const at::Tensor& v) {
  check_float_cpu(x, "input");
  TORCH_CHECK(x.dim() == 3 && x.size(0) * x.size(2) > 1 && x.size(1) > 0,
              "input must be N x C x L with more than one value per channel, got ", x.sizes());
  for (auto [t, name] : {std::pair{&w, "weight"}, {&b, "bias"}, {&m, "running mean"}, {&v, "running variance"}}) {
    check_channels(*t, x.size(1), name);
  }
}

void check_soft_threshold(const at::Tensor& x, const at::Tensor& tau) {
  check_float_cpu(x, "input");
  check_float_cpu(tau, "thresholds");
  TORCH_CHECK(x.dim() == 3 && x.size(1) > 0 && x.size(2) > 0, "input must be N x C x L, got ", x.sizes());
  TORCH_CHECK(tau.dim() == 3 && tau.size(0) == x.size(0) && (tau.size(1) == x.size(1) || tau.size(1) == 1) &&
                  tau.size(2) == 1,
              "thresholds must be N x C x 1 or N x 1 x 1 for an input of ", x.sizes(), ", got ", tau.sizes());
}

}  // namespace

extern "C" {

void drsn_cpu_set_kernels(const drsn_cpu_kernels* table) { kernels = *table; }

const char* drsn_cpu_last_error() { return last_error.c_str(); }

at::Tensor* drsn_cpu_conv1d(const at::Tensor* x, const at::Tensor* w, const at::Tensor* b, int64_t stride) {
  return guarded([&] {
    check_conv(*x, *w, optional(b), stride);
    const auto bias = optional(b);
    return Conv1d::apply(x->contiguous(), w->contiguous(), bias.defined() ? bias.contiguous() : bias, stride);
  });
}

at::Tensor* drsn_cpu_batch_norm1d(const at::Tensor* x, const at::Tensor* w, const at::Tensor* b,
                                  const at::Tensor* running_mean, const at::Tensor* running_var, double momentum,
                                  double eps) {
  return guarded([&] {
    check_batch_norm(*x, optional(w), optional(b), optional(running_mean), optional(running_var));
    return batch_norm_train(x->contiguous(), optional(w), optional(b), optional(running_mean), optional(running_var),
                            momentum, eps);
  });
}

at::Tensor* drsn_cpu_soft_threshold(const at::Tensor* x, const at::Tensor* tau) {
  return guarded([&] {
    check_soft_threshold(*x, *tau);
    return SoftThreshold::apply(x->contiguous(), tau->contiguous());
  });
}

at::Tensor* drsn_cpu_mean_abs(const at::Tensor* x) {
  return guarded([&] {
    check_float_cpu(*x, "input");
    TORCH_CHECK(x->dim() == 3 && x->size(1) > 0 && x->size(2) > 0, "input must be N x C x L, got ", x->sizes());
    return MeanAbs::apply(x->contiguous());
  });
}
}
