#include "engine/model/openelm_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/kernels/bf16.h"
#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/int8_matmul.h"
#include "engine/kernels/onednn_context.h"
#include "engine/kernels/onednn_matmul.h"
#include "engine/kernels/paged_attention.h"
#include "engine/kernels/rms_norm.h"
#include "engine/kernels/rope.h"
#include "engine/kernels/swiglu.h"
#include "engine/model/workspace.h"

namespace openelm {
namespace {

// Create() packs the weights in the layout oneDNN prefers for this many rows
// and builds a single M=1 primitive; Prepare() builds the real buckets for
// max_num_batched_tokens against the same packed weights.
constexpr int32_t kLayoutRows = 256;

std::string LayerTensor(int32_t layer, absl::string_view suffix) {
  return absl::StrCat("transformer.layers.", layer, ".", suffix);
}

absl::StatusOr<const TensorView*> FindTensor(const Checkpoint& ckpt,
                                             const std::string& name) {
  const TensorView* t = ckpt.Find(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", ckpt.dir(), " lacks tensor ", name));
  }
  return t;
}

absl::StatusOr<std::vector<float>> LoadF32(const Checkpoint& ckpt,
                                           const std::string& name,
                                           int64_t expected_elements) {
  OPENELM_ASSIGN_OR_RETURN(const TensorView* t, FindTensor(ckpt, name));
  if (t->num_elements() != expected_elements) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, " has ", t->num_elements(), " elements, expected ",
                     expected_elements));
  }
  std::vector<float> out;
  TensorToF32(*t, &out);
  return out;
}

std::string BaseName(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  const size_t slash = d.rfind('/');
  return slash == std::string::npos ? d : d.substr(slash + 1);
}

struct LayerWeights {
  std::vector<float> attn_norm;      // [d]
  std::vector<float> q_norm;         // [hd]
  std::vector<float> k_norm;         // [hd]
  std::vector<float> ffn_norm;       // [d]
  std::unique_ptr<Matmul> qkv_proj;  // [(q + 2 kv) * hd, d]
  std::unique_ptr<Matmul> out_proj;  // [d, q * hd]
  std::unique_ptr<Matmul> proj_1;    // [2 * ffn, d]  gate | up
  std::unique_ptr<Matmul> proj_2;    // [d, ffn]
};

// The DecoderModel behind OpenElmModel::Create(). See openelm_model.h for the
// KV layout. Thread-compatible (engine thread only).
class OpenElmModelImpl final : public OpenElmModel {
 public:
  OpenElmModelImpl(const OpenElmConfig& config, const OpenElmModelOptions& options,
                   const ExecutionPlan& plan)
      : config_(config),
        options_(options),
        plan_(plan),
        rope_(config.head_dim, config.max_context_length, config.rope_freq_constant) {}

  absl::Status Load(const Checkpoint& ckpt);

  const ModelInfo& info() const override { return info_; }
  int64_t KvBytesPerBlock(int32_t block_size_tokens) const override {
    return KvBytesPerBlockFor(config_, options_.kv_dtype, block_size_tokens);
  }
  absl::Status Prepare(int32_t num_blocks, int32_t block_size_tokens,
                       int32_t max_num_batched_tokens, int32_t max_num_seqs,
                       int32_t max_logits_rows) override;
  absl::StatusOr<LogitsView> Forward(const ForwardBatch& batch) override;
  void CopyBlock(BlockId src, BlockId dst) override;

  int64_t num_primitives_created() const override {
    return ctx_->num_primitives_created();
  }
  const ExecutionPlan& plan() const override { return plan_; }
  int64_t num_matmul_runs() const override {
    int64_t n = lm_head_->num_runs();
    for (const LayerWeights& w : layers_) {
      n += w.qkv_proj->num_runs() + w.out_proj->num_runs() + w.proj_1->num_runs() +
           w.proj_2->num_runs();
    }
    return n;
  }

 private:
  absl::Status ValidateBatch(const ForwardBatch& batch) const;
  absl::Status RunLayer(int32_t l, int32_t num_tokens);
  void WriteKv(int32_t l);
  PagedKvLayout KvLayout(int32_t l) const {
    return {.num_kv_heads = config_.layers[l].num_kv_heads,
            .head_dim = config_.head_dim,
            .block_size = block_size_,
            .bf16 = kv_bf16()};
  }
  bool kv_bf16() const { return options_.kv_dtype == DType::kBF16; }
  int32_t threads() const { return ctx_->num_threads(); }

  const OpenElmConfig config_;
  const OpenElmModelOptions options_;
  const ExecutionPlan plan_;
  ModelInfo info_;
  std::unique_ptr<OnednnContext> ctx_;
  std::vector<LayerWeights> layers_;
  std::vector<float> final_norm_;  // [d]
  // The embedding gather reads the LM head's packed copy (one copy of the
  // table); only where that copy holds other values than the stored weights
  // (f32 weights packed as bf16) does one of these hold it.
  std::vector<uint16_t> embed_bf16_;  // [vocab, d] bf16 weights, oneDNN LM head
  std::vector<float> embed_f32_;      // [vocab, d] f32 weights
  std::unique_ptr<Matmul> lm_head_;   // token_embeddings as [vocab, d]
  std::shared_ptr<Int8ActivationScratch> int8_scratch_;  // int8 plan only
  const RopeTable rope_;

  // Set by Prepare().
  bool prepared_ = false;
  int32_t num_blocks_ = 0;
  int32_t block_size_ = 0;
  int32_t max_tokens_ = 0;
  int32_t max_seqs_ = 0;
  int32_t max_logits_rows_ = 0;
  std::vector<AlignedArray<uint8_t>> kv_;  // per layer, see openelm_model.h
  Workspace ws_;
  std::vector<AttentionSeq> seqs_;  // capacity max_seqs_
  std::unique_ptr<PagedAttentionScratch> attention_scratch_;
};

absl::Status OpenElmModelImpl::Load(const Checkpoint& ckpt) {
  OPENELM_ASSIGN_OR_RETURN(ctx_, OnednnContext::Create(options_.num_threads));
  const int64_t d = config_.model_dim;
  const int64_t hd = config_.head_dim;
  const MatmulDType compute =
      plan_.matmul == MatmulBackend::kOnednnInt8 ? MatmulDType::kS8
      : plan_.activation_dtype == DType::kBF16   ? MatmulDType::kBF16
                                                 : MatmulDType::kF32;
  const bool bf16_weights = plan_.weight_dtype == DType::kBF16;
  const bool own = plan_.matmul == MatmulBackend::kOwnBf16;
  const bool int8 = plan_.matmul == MatmulBackend::kOwnInt8;
  if (int8) int8_scratch_ = std::make_shared<Int8ActivationScratch>();
  const CpuKernels& kernels = ActiveKernels();

  // Packs one [n, k] tensor. Weights are first brought to the storage dtype
  // (so bf16 storage rounds f32 checkpoints), then packed in the compute type.
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  auto pack = [&](const std::string& name, int64_t n,
                  int64_t k) -> absl::StatusOr<std::unique_ptr<Matmul>> {
    OPENELM_ASSIGN_OR_RETURN(const TensorView* t, FindTensor(ckpt, name));
    if (t->shape.size() != 2 || t->shape[0] != n || t->shape[1] != k) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", name, " has the wrong shape; expected [", n, ", ", k, "]"));
    }
    const MatmulSpec spec{.n = n,
                          .k = k,
                          .max_m = 1,
                          .layout_m = kLayoutRows,
                          .compute = compute,
                          .name = name};
    if (own) {
      TensorToBF16(*t, &bf16);
      return Bf16Matmul::Create(kernels, n, k, 1, bf16.data(), ctx_->num_threads());
    }
    if (int8) {
      TensorToF32(*t, &f32);
      return Int8Matmul::Create(kernels, n, k, 1, f32.data(), int8_scratch_,
                                ctx_->num_threads(), name);
    }
    if (compute == MatmulDType::kS8) {
      TensorToF32(*t, &f32);
      return PackedMatmul::Create(ctx_.get(), spec, f32.data(), /*weight_is_bf16=*/false);
    }
    if (bf16_weights) {
      TensorToBF16(*t, &bf16);
      return PackedMatmul::Create(ctx_.get(), spec, bf16.data(), /*weight_is_bf16=*/true);
    }
    TensorToF32(*t, &f32);
    return PackedMatmul::Create(ctx_.get(), spec, f32.data(), /*weight_is_bf16=*/false);
  };

  int64_t weight_bytes = 0;
  layers_.resize(config_.num_layers);
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    const LayerShape& s = config_.layers[l];
    LayerWeights& w = layers_[l];
    OPENELM_ASSIGN_OR_RETURN(w.attn_norm,
                             LoadF32(ckpt, LayerTensor(l, "attn_norm.weight"), d));
    OPENELM_ASSIGN_OR_RETURN(w.q_norm,
                             LoadF32(ckpt, LayerTensor(l, "attn.q_norm.weight"), hd));
    OPENELM_ASSIGN_OR_RETURN(w.k_norm,
                             LoadF32(ckpt, LayerTensor(l, "attn.k_norm.weight"), hd));
    OPENELM_ASSIGN_OR_RETURN(w.ffn_norm,
                             LoadF32(ckpt, LayerTensor(l, "ffn_norm.weight"), d));
    const int64_t qkv_rows = (s.num_query_heads + 2 * int64_t{s.num_kv_heads}) * hd;
    OPENELM_ASSIGN_OR_RETURN(w.qkv_proj,
                             pack(LayerTensor(l, "attn.qkv_proj.weight"), qkv_rows, d));
    OPENELM_ASSIGN_OR_RETURN(w.out_proj, pack(LayerTensor(l, "attn.out_proj.weight"), d,
                                              s.num_query_heads * hd));
    OPENELM_ASSIGN_OR_RETURN(
        w.proj_1, pack(LayerTensor(l, "ffn.proj_1.weight"), 2 * int64_t{s.ffn_dim}, d));
    OPENELM_ASSIGN_OR_RETURN(w.proj_2,
                             pack(LayerTensor(l, "ffn.proj_2.weight"), d, s.ffn_dim));
    weight_bytes += w.qkv_proj->packed_weight_bytes() +
                    w.out_proj->packed_weight_bytes() + w.proj_1->packed_weight_bytes() +
                    w.proj_2->packed_weight_bytes() + 4 * (2 * d + 2 * hd);
  }
  OPENELM_ASSIGN_OR_RETURN(final_norm_, LoadF32(ckpt, "transformer.norm.weight", d));
  const std::string embed_name = "transformer.token_embeddings.weight";
  OPENELM_ASSIGN_OR_RETURN(lm_head_, pack(embed_name, config_.vocab_size, d));
  // The gather reads the LM head's packed copy. A oneDNN one holds exactly
  // the stored values (bf16 weights packed as bf16 or widened to f32; f32 as
  // f32; int8 dequantized as the own int8 head does) except f32 weights
  // packed as bf16: then `pack`'s converted table is kept for the gather.
  if (!own && !int8 && (bf16_weights || compute != MatmulDType::kBF16)) {
    static_cast<PackedMatmul*>(lm_head_.get())->PrepareRowGather();
  }
  if (lm_head_->GathersRows()) {
    std::vector<uint16_t>().swap(bf16);
    std::vector<float>().swap(f32);
  } else if (bf16_weights) {
    embed_bf16_ = std::move(bf16);
    weight_bytes += static_cast<int64_t>(embed_bf16_.size()) * 2;
  } else {
    embed_f32_ = std::move(f32);
    weight_bytes += static_cast<int64_t>(embed_f32_.size()) * 4;
  }
  weight_bytes += lm_head_->packed_weight_bytes() + 4 * d;

  info_.name = BaseName(ckpt.dir());
  info_.size_name = config_.SizeName();
  info_.vocab_size = config_.vocab_size;
  info_.max_context_length = config_.max_context_length;
  info_.num_layers = config_.num_layers;
  info_.num_parameters = config_.NumParameters();
  info_.weight_dtype = DTypeFlagValue(plan_.weight_dtype);
  info_.activation_dtype = DTypeFlagValue(plan_.activation_dtype);
  info_.cpu_isa = CpuIsaName(plan_.isa);
  info_.plan = absl::StrCat(plan_.Describe(),
                            " attention=", PagedAttentionVariant(config_.head_dim));
  info_.kv_dtype = kv_bf16() ? "bf16" : "f32";
  info_.kv_bytes_per_token = KvBytesPerBlockFor(config_, options_.kv_dtype, 1);
  info_.weight_bytes = weight_bytes;
  info_.bos_token_id = config_.bos_token_id;
  info_.eos_token_id = config_.eos_token_id;
  return absl::OkStatus();
}

absl::Status OpenElmModelImpl::Prepare(int32_t num_blocks, int32_t block_size_tokens,
                                       int32_t max_num_batched_tokens,
                                       int32_t max_num_seqs, int32_t max_logits_rows) {
  if (prepared_) return absl::FailedPreconditionError("Prepare() called twice");
  if (num_blocks <= 0 || block_size_tokens <= 0 || max_num_batched_tokens <= 0 ||
      max_num_seqs <= 0 || max_logits_rows <= 0 ||
      max_logits_rows > max_num_batched_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Prepare needs positive sizes and max_logits_rows <= max_num_batched_tokens: "
        "num_blocks=",
        num_blocks, " block_size=", block_size_tokens,
        " max_num_batched_tokens=", max_num_batched_tokens,
        " max_num_seqs=", max_num_seqs, " max_logits_rows=", max_logits_rows));
  }
  num_blocks_ = num_blocks;
  block_size_ = block_size_tokens;
  max_tokens_ = max_num_batched_tokens;
  max_seqs_ = max_num_seqs;
  max_logits_rows_ = max_logits_rows;

  const int64_t d = config_.model_dim, hd = config_.head_dim;
  kv_.resize(config_.num_layers);
  const int64_t dtype_bytes = kv_bf16() ? 2 : 4;
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    const int64_t bytes = KvLayout(l).elements_per_block() * dtype_bytes * num_blocks;
    OPENELM_RETURN_IF_ERROR(kv_[l].Allocate(bytes));
  }

  // The largest bucket is max_num_batched_tokens itself, so `cap` rows cover
  // every bucket a step can use.
  for (LayerWeights& w : layers_) {
    OPENELM_RETURN_IF_ERROR(w.qkv_proj->SetMaxM(max_tokens_));
    OPENELM_RETURN_IF_ERROR(w.out_proj->SetMaxM(max_tokens_));
    OPENELM_RETURN_IF_ERROR(w.proj_1->SetMaxM(max_tokens_));
    OPENELM_RETURN_IF_ERROR(w.proj_2->SetMaxM(max_tokens_));
  }
  // The LM head runs only on the rows whose logits are wanted.
  OPENELM_RETURN_IF_ERROR(lm_head_->SetMaxM(max_logits_rows_));
  const int64_t cap = max_tokens_;
  ws_.cap = max_tokens_;
  int64_t max_qkv = 0;
  for (const LayerShape& s : config_.layers) {
    max_qkv = std::max<int64_t>(max_qkv,
                                (s.num_query_heads + 2 * int64_t{s.num_kv_heads}) * hd);
  }
  OPENELM_RETURN_IF_ERROR(ws_.x.Allocate(cap * d));
  OPENELM_RETURN_IF_ERROR(ws_.xn.Allocate(cap * d));
  OPENELM_RETURN_IF_ERROR(ws_.qkv.Allocate(cap * max_qkv));
  OPENELM_RETURN_IF_ERROR(ws_.attn.Allocate(cap * config_.max_q_heads() * hd));
  OPENELM_RETURN_IF_ERROR(ws_.proj.Allocate(cap * d));
  OPENELM_RETURN_IF_ERROR(ws_.ffn_in.Allocate(cap * 2 * config_.max_ffn_dim()));
  OPENELM_RETURN_IF_ERROR(ws_.ffn_mid.Allocate(cap * config_.max_ffn_dim()));
  OPENELM_RETURN_IF_ERROR(ws_.head_in.Allocate(int64_t{max_logits_rows_} * d));
  OPENELM_RETURN_IF_ERROR(
      ws_.logits.Allocate(int64_t{max_logits_rows_} * config_.vocab_size));
  OPENELM_RETURN_IF_ERROR(ws_.positions.Allocate(cap));
  seqs_.reserve(max_seqs_);
  attention_scratch_ =
      std::make_unique<PagedAttentionScratch>(max_tokens_, config_.max_kv_heads());
  prepared_ = true;
  return absl::OkStatus();
}

absl::Status OpenElmModelImpl::ValidateBatch(const ForwardBatch& batch) const {
  if (!prepared_) return absl::FailedPreconditionError("Forward() before Prepare()");
  const int32_t n = batch.num_tokens();
  if (n > max_tokens_ || static_cast<int32_t>(batch.rows.size()) > max_seqs_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch of ", n, " tokens / ", batch.rows.size(),
        " rows exceeds the prepared limits ", max_tokens_, " / ", max_seqs_));
  }
  int32_t expected_offset = 0, logits_rows = 0;
  for (const BatchRow& r : batch.rows) {
    logits_rows += r.num_logits_rows();
    if (r.num_tokens <= 0 || r.token_offset != expected_offset || r.start_position < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad row for request ", r.request_id, ": offset ", r.token_offset,
                       " tokens ", r.num_tokens, " start ", r.start_position));
    }
    expected_offset += r.num_tokens;
    const int32_t end = r.start_position + r.num_tokens;
    if (end > config_.max_context_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("request ", r.request_id, " reaches position ", end,
                       " > max_context_length ", config_.max_context_length));
    }
    if ((end - 1) / block_size_ >= r.num_blocks || r.block_table == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("request ", r.request_id, ": ", r.num_blocks,
                       " blocks do not cover ", end, " positions"));
    }
    for (int32_t b = 0; b <= (end - 1) / block_size_; ++b) {
      if (r.block_table[b] < 0 || r.block_table[b] >= num_blocks_) {
        return absl::InvalidArgumentError(absl::StrCat(
            "request ", r.request_id, ": block id ", r.block_table[b], " out of range"));
      }
    }
  }
  if (expected_offset != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows cover ", expected_offset, " tokens but the batch has ", n));
  }
  if (logits_rows > max_logits_rows_) {
    return absl::InvalidArgumentError(absl::StrCat("batch asks for ", logits_rows,
                                                   " rows of logits; prepared for ",
                                                   max_logits_rows_));
  }
  for (TokenId t : batch.tokens) {
    if (t < 0 || t >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", t, " out of range"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LogitsView> OpenElmModelImpl::Forward(const ForwardBatch& batch) {
  OPENELM_RETURN_IF_ERROR(ValidateBatch(batch));
  const int32_t n = batch.num_tokens();
  const int64_t d = config_.model_dim;
  if (n == 0) return LogitsView{ws_.logits.data(), 0, config_.vocab_size};

  // Positions and attention rows.
  seqs_.clear();
  for (const BatchRow& r : batch.rows) {
    for (int32_t i = 0; i < r.num_tokens; ++i)
      ws_.positions.data()[r.token_offset + i] = r.start_position + i;
    seqs_.push_back({.token_offset = r.token_offset,
                     .num_tokens = r.num_tokens,
                     .start_position = r.start_position,
                     .block_table = r.block_table,
                     .num_blocks = r.num_blocks});
  }

  // 1. Embedding gather (no scaling).
  float* x = ws_.x.data();
  const bool gather_from_head = lm_head_->GathersRows();
  for (int32_t t = 0; t < n; ++t) {
    const int64_t tok = batch.tokens[t];
    if (gather_from_head) {
      lm_head_->GatherRow(tok, x + t * d);
    } else if (!embed_bf16_.empty()) {
      ConvertBf16ToF32(&embed_bf16_[tok * d], d, x + t * d);
    } else {
      std::memcpy(x + t * d, &embed_f32_[tok * d], sizeof(float) * d);
    }
  }

  // 2. Decoder layers.
  for (int32_t l = 0; l < config_.num_layers; ++l)
    OPENELM_RETURN_IF_ERROR(RunLayer(l, n));

  // 3. Final norm and tied LM head, only for the rows whose logits are wanted.
  int32_t rows = 0;
  float* head_in = ws_.head_in.data();
  for (const BatchRow& r : batch.rows) {
    const int32_t count = r.num_logits_rows();
    const int32_t first = r.token_offset + r.num_tokens - count;
    std::memcpy(head_in + rows * d, x + first * d, sizeof(float) * d * count);
    rows += count;
  }
  RmsNorm(head_in, final_norm_.data(), rows, config_.model_dim, config_.rms_norm_eps,
          head_in, threads());
  OPENELM_RETURN_IF_ERROR(lm_head_->Run(head_in, rows, ws_.logits.data()));
  return LogitsView{ws_.logits.data(), rows, config_.vocab_size};
}

absl::Status OpenElmModelImpl::RunLayer(int32_t l, int32_t n) {
  const LayerShape& s = config_.layers[l];
  LayerWeights& w = layers_[l];
  const int32_t d = config_.model_dim, hd = config_.head_dim;
  const float eps = config_.rms_norm_eps;
  const int64_t qkv_stride = (s.num_query_heads + 2 * int64_t{s.num_kv_heads}) * hd;
  float* x = ws_.x.data();
  float* xn = ws_.xn.data();
  float* qkv = ws_.qkv.data();

  // Attention block.
  RmsNorm(x, w.attn_norm.data(), n, d, eps, xn, threads());  // [n, d]
  OPENELM_RETURN_IF_ERROR(w.qkv_proj->Run(xn, n, qkv));      // [n, q|k|v]
  float* q = qkv;                                            // heads 0..q-1
  float* k = qkv + int64_t{s.num_query_heads} * hd;          // then kv heads of K
  if (config_.normalize_qk_projections) {
    RmsNormHeads(q, qkv_stride, n, s.num_query_heads, hd, w.q_norm.data(), eps,
                 threads());
    RmsNormHeads(k, qkv_stride, n, s.num_kv_heads, hd, w.k_norm.data(), eps, threads());
  }
  rope_.Apply(ws_.positions.data(), n, q, qkv_stride, s.num_query_heads, threads());
  rope_.Apply(ws_.positions.data(), n, k, qkv_stride, s.num_kv_heads, threads());
  WriteKv(l);
  const PagedAttentionShape shape{.num_q_heads = s.num_query_heads,
                                  .layout = KvLayout(l),
                                  .scale = 1.0f / std::sqrt(static_cast<float>(hd))};
  const int64_t attn_stride = int64_t{s.num_query_heads} * hd;
  PagedAttention(shape, seqs_, q, qkv_stride, kv_[l].data(), ws_.attn.data(), attn_stride,
                 *attention_scratch_, threads());
  OPENELM_RETURN_IF_ERROR(
      w.out_proj->Run(ws_.attn.data(), n, ws_.proj.data()));  // [n, d]
  AddInPlace(ws_.proj.data(), int64_t{n} * d, x, threads());

  // Feed-forward block.
  RmsNorm(x, w.ffn_norm.data(), n, d, eps, xn, threads());
  OPENELM_RETURN_IF_ERROR(w.proj_1->Run(xn, n, ws_.ffn_in.data()));        // [n, gate|up]
  SwiGlu(ws_.ffn_in.data(), n, s.ffn_dim, ws_.ffn_mid.data(), threads());  // [n, ffn]
  OPENELM_RETURN_IF_ERROR(w.proj_2->Run(ws_.ffn_mid.data(), n, ws_.proj.data()));
  AddInPlace(ws_.proj.data(), int64_t{n} * d, x, threads());
  return absl::OkStatus();
}

// Copies each new token's (rotated) K and V into its block slot.
void OpenElmModelImpl::WriteKv(int32_t l) {
  const LayerShape& s = config_.layers[l];
  const PagedKvLayout layout = KvLayout(l);
  const int32_t hd = config_.head_dim;
  const int64_t qkv_stride = (s.num_query_heads + 2 * int64_t{s.num_kv_heads}) * hd;
  const float* qkv = ws_.qkv.data();
  for (const AttentionSeq& seq : seqs_) {
    for (int32_t i = 0; i < seq.num_tokens; ++i) {
      const int32_t pos = seq.start_position + i;
      const BlockId block = seq.block_table[pos / block_size_];
      const int32_t slot = pos % block_size_;
      const float* row = qkv + (seq.token_offset + i) * qkv_stride;
      for (int32_t g = 0; g < s.num_kv_heads; ++g) {
        const float* kh = row + int64_t{s.num_query_heads + g} * hd;
        const float* vh = row + int64_t{s.num_query_heads + s.num_kv_heads + g} * hd;
        const int64_t k_off = layout.offset(block, g, 0, slot);
        const int64_t v_off = layout.offset(block, g, 1, slot);
        if (kv_bf16()) {
          uint16_t* base = reinterpret_cast<uint16_t*>(kv_[l].data());
          ConvertF32ToBf16(kh, hd, base + k_off);
          ConvertF32ToBf16(vh, hd, base + v_off);
        } else {
          float* base = reinterpret_cast<float*>(kv_[l].data());
          std::memcpy(base + k_off, kh, sizeof(float) * hd);
          std::memcpy(base + v_off, vh, sizeof(float) * hd);
        }
      }
    }
  }
}

void OpenElmModelImpl::CopyBlock(BlockId src, BlockId dst) {
  if (!prepared_ || src == dst) return;
  const int64_t dtype_bytes = kv_bf16() ? 2 : 4;
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    const int64_t block_bytes = KvLayout(l).elements_per_block() * dtype_bytes;
    uint8_t* base = kv_[l].data();
    std::memcpy(base + dst * block_bytes, base + src * block_bytes, block_bytes);
  }
}

}  // namespace

int64_t OpenElmModel::KvBytesPerBlockFor(const OpenElmConfig& config, DType kv_dtype,
                                         int32_t block_size_tokens) {
  const int64_t dtype_bytes = kv_dtype == DType::kBF16 ? 2 : 4;
  int64_t per_token = 0;
  for (const LayerShape& s : config.layers)
    per_token += 2 * int64_t{s.num_kv_heads} * config.head_dim;
  return per_token * dtype_bytes * block_size_tokens;
}

absl::StatusOr<std::unique_ptr<OpenElmModel>> OpenElmModel::Create(
    const Checkpoint& checkpoint, const OpenElmModelOptions& options) {
  if (options.weight_dtype != DType::kF32 && options.weight_dtype != DType::kBF16 &&
      options.weight_dtype != DType::kI8) {
    return absl::InvalidArgumentError("weight_dtype must be F32, BF16 or I8");
  }
  if (options.kv_dtype != DType::kF32 && options.kv_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("kv_dtype must be F32 or BF16");
  }
  const OpenElmConfig& config = checkpoint.config();
  if (config.head_dim % 2 != 0 || config.head_dim > 256 || config.num_layers <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported head_dim ", config.head_dim));
  }
  for (const LayerShape& s : config.layers) {
    if (s.num_kv_heads <= 0 || s.num_query_heads % s.num_kv_heads != 0 ||
        s.num_query_heads / s.num_kv_heads > 64) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported head counts ", s.num_query_heads, " / ", s.num_kv_heads));
    }
  }
  PlanRequest request;
  request.weight_dtype = options.weight_dtype;
  request.kv_dtype = options.kv_dtype;
  request.own_int8_kernels = options.own_int8_kernels;
  if (options.bf16_activations.has_value()) {
    request.activation_dtype = *options.bf16_activations ? DType::kBF16 : DType::kF32;
  }
  OPENELM_ASSIGN_OR_RETURN(const ExecutionPlan plan,
                           ResolvePlan(EffectiveCpuIsa(), request));
  auto model = std::make_unique<OpenElmModelImpl>(config, options, plan);
  OPENELM_RETURN_IF_ERROR(model->Load(checkpoint));
  return model;
}

}  // namespace openelm
